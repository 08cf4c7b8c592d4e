#!/usr/bin/perl
# The JSON status document from a live nginx: every key of issue 3 with the values the
# configuration and real failures give, ?upstream= and ?state=, HEAD, 405, and every real
# document valid against docs/status.schema.json (JSON Schema 2020-12, python3-jsonschema).
#   Run alone: prove -v t/status_json.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Time::Local qw(timegm);
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Status qw(need_tools validate_json);

need_tools('jsonschema');

my $t = Triage::Harness->new;
my $ok = $t->backend('ok');
my $silent = $t->backend('silent');
my ($c1, $c2, $c3, $c4, $c5) = map { Triage::Backend::closed_port() } 1 .. 5;

my $conf = <<'CONF';
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 128; }
http {
    log_format st '$request_uri|$status|$upstream_addr';
    access_log logs/access.log st;
    proxy_connect_timeout 2s;
    proxy_read_timeout 1s;
    proxy_next_upstream off;

    # zone: the peers' fails and states are shared by both workers
    upstream app {
        zone app_zone 64k;
        server %%OK%% weight=3 max_fails=2 fail_timeout=30s max_conns=50;
        server localhost:%%C1%% max_fails=1 fail_timeout=60s;
        server 127.0.0.1:%%C2%% down;
        server 127.0.0.1:%%C3%% backup;
        keepalive 8;
    }
    # two peers: nginx never marks the single peer of an upstream failed
    upstream dead {
        zone dead_zone 64k;
        server 127.0.0.1:%%C4%% max_fails=1 fail_timeout=60s;
        server 127.0.0.1:%%C5%% max_fails=1 fail_timeout=60s;
    }
    upstream slow { server %%SILENT%%; }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /app  { proxy_pass http://app; proxy_http_version 1.1;
                         proxy_set_header Connection ""; }
        location /dead { proxy_pass http://dead; proxy_next_upstream error; }
        location /slow { proxy_pass http://slow; }
        location = /status { triage_status; access_log off; }
        location = /status/json { triage_status json; access_log off; }
    }
}
CONF
my %vars = (OK => $ok->addr, SILENT => $silent->addr, C1 => $c1, C2 => $c2, C3 => $c3, C4 => $c4,
            C5 => $c5);
$t->start($conf, %vars);

sub get_json {
    my ($path, $what) = @_;
    my $r = $t->http('main', $path);
    is($r->{status}, 200, "$what: 200");
    is($r->{headers}{'content-type'}, 'application/json', "$what: Content-Type application/json");
    is($r->{headers}{'cache-control'}, 'no-store', "$what: Cache-Control: no-store");
    like($r->{headers}{'server-timing'} // '', qr/^collect;dur=\d+\.\d{3}, render;dur=\d+\.\d{3}, cpu;dur=\d+\.\d{3}$/,
         "$what: Server-Timing says what the snapshot and the rendering cost");
    my $j = eval { decode_json($r->{body}) };
    ok($j, "$what: body is JSON") or diag("$@\n$r->{body}");
    return ($j || {}, $r->{body});
}

sub epoch {
    my ($s) = @_;
    my @p = ($s // '') =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z$/ or return undef;
    return timegm(@p[5, 4, 3, 2], $p[1] - 1, $p[0]) + $p[6] / 1000;
}

sub peer {
    my ($j, $up, $name) = @_;
    my ($p) = grep { $_->{name} eq $name } @{ $j->{upstreams}{$up}{peers} || [] };
    return $p || {};
}

# --- real failures: trip 127.0.0.1:C1 (max_fails=1) with a bounded number of requests
#     (round-robin gives it 1 request in 4), a read timeout, and no_live_upstreams.
my $start = time;
my $tripped = 0;
for my $i (1 .. 12) {
    my $r = $t->http('main', "/app?$i");
    if ($r->{status} == 502) { $tripped = $i; last }
    is($r->{status}, 200, "/app?$i: 200 from the healthy peer");
}
ok($tripped, "127.0.0.1:$c1 was tried and refused (request $tripped)");
is($t->http('main', '/slow')->{status}, 504, '/slow: 504 (read timeout)');
is($t->http('main', '/dead?1')->{status}, 502, '/dead?1: 502 (both peers refused: both trip)');
is($t->http('main', '/dead?2')->{status}, 502, '/dead?2: 502 (no live upstreams)');
$t->wait_access_log('access.log', $tripped + 3);

my ($j, $raw) = get_json('/status', 'status');
my @docs = ($raw);

# --- top level
like($j->{version}, qr/^\d+\.\d+\.\d+/, 'version');
is($j->{nginx_version}, $t->nginx_version, 'nginx_version');
ok(grep({ $_ == ($j->{pid} // 0) } $t->worker_pids), 'pid is a worker of this nginx')
    or diag("pid $j->{pid}, workers: @{[ $t->worker_pids ]}");
is($j->{generation}, 1, 'generation 1 before any reload');
my ($lt, $now) = (epoch($j->{load_time}), epoch($j->{time}));
ok(defined $lt && defined $now, 'load_time and time are RFC 3339 with milliseconds, UTC')
    or diag("load_time $j->{load_time}, time $j->{time}");
ok($lt <= $now && $now - $lt < 60 && abs($now - time) < 5, 'load_time <= time, both now');
is(ref $j->{recent_failures}, 'ARRAY', 'recent_failures is an array');
is_deeply([ sort keys %$j ],
    [ sort qw(version nginx_version pid generation load_time time upstreams recent_failures) ],
    'top level: exactly the keys of the issue');

# --- upstream app
my $app = $j->{upstreams}{app} || {};
is($app->{zone}, 'app_zone', 'app: zone');
is($app->{keepalive}, 8, 'app: keepalive 8');
ok(defined $app->{dynamic} && !$app->{dynamic}, 'app: not dynamic');
my $tot = $app->{totals} || {};
is_deeply([ @$tot{qw(peers up down unhealthy)} ], [ 4, 2, 1, 1 ],
    'app: totals peers 4, up 2 (healthy + backup), down 1, unhealthy 1 (unavailable)');
is($tot->{failures}, 1, 'app: totals.failures 1');
ok($tot->{requests} >= 0, 'app: totals.requests is a count');
is_deeply($app->{failures_by_cause}, { connect_refused => 1 }, 'app: failures_by_cause');
is_deeply($app->{failures}, { total => 1, by_cause => { connect_refused => 1 } }, 'app: failures');
for my $k (qw(failure_rate_1m failure_rate_5m)) {
    ok(!defined $app->{$k} || ($app->{$k} > 0 && $app->{$k} <= 1),
       "app: $k is null (no counted request) or the rate of a failure") or diag($app->{$k});
}
is_deeply([ map { $_->{name} } @{ $app->{peers} } ],
    [ $ok->addr, "127.0.0.1:$c1", "127.0.0.1:$c2", "127.0.0.1:$c3" ],
    'app: peers in configuration order, backup last');

my $p = peer($j, 'app', $ok->addr);
is_deeply({ map { $_ => $p->{$_} } qw(server weight max_fails fail_timeout max_conns state) },
    { server => $ok->addr, weight => 3, max_fails => 2, fail_timeout => 30, max_conns => 50,
      state => 'up' }, 'healthy peer: configuration and state');
ok(!$p->{backup}, 'healthy peer: not backup');
is_deeply([ sort keys %{ $p->{responses} } ], [ sort qw(1xx 2xx 3xx 4xx 5xx total) ],
    'healthy peer: responses by class and total');
my $rs = $p->{responses};
is($rs->{total}, $rs->{'1xx'} + $rs->{'2xx'} + $rs->{'3xx'} + $rs->{'4xx'} + $rs->{'5xx'},
   'healthy peer: responses.total is the sum of the classes');
is_deeply($p->{failures}, { total => 0, by_cause => {} }, 'healthy peer: no failures');
is($p->{last_failure}, undef, 'healthy peer: last_failure null');
is($p->{hint}, undef, 'healthy peer: no hint');
is($p->{health}, undef, 'healthy peer: health null (no active checks)');
is_deeply([ sort keys %$p ],
    [ sort qw(name server backup weight max_fails fail_timeout max_conns state requests
              responses failures last_failure header_time response_time health hint) ],
    'peer: exactly the keys of the issue');

$p = peer($j, 'app', "127.0.0.1:$c1");
is($p->{server}, "localhost:$c1", 'refused peer: server as written in the configuration');
is($p->{state}, 'unavailable', 'refused peer: unavailable (max_fails=1 tripped)');
is($p->{max_conns}, undef, 'refused peer: max_conns null (unlimited)');
is_deeply($p->{failures}, { total => 1, by_cause => { connect_refused => 1 } },
    'refused peer: failures');
is($p->{last_failure}{cause}, 'connect_refused', 'refused peer: last_failure.cause');
is($p->{last_failure}{errno}, 111, 'refused peer: last_failure.errno');
my $lf = epoch($p->{last_failure}{time});
ok($lf && $lf >= $start - 1 && $lf <= $now + 0.001, 'refused peer: last_failure.time');
ok(!defined $p->{hint} || $p->{hint} =~ /nothing listens/,
   'refused peer: hint null or the connect_refused one') or diag($p->{hint});

$p = peer($j, 'app', "127.0.0.1:$c2");
is($p->{state}, 'down', 'configured down peer: state down');
$p = peer($j, 'app', "127.0.0.1:$c3");
ok($p->{backup}, 'backup peer: backup true');
is($p->{state}, 'up', 'backup peer: up');

# --- dead: a failure before any peer was chosen is the upstream's own
my $dead = $j->{upstreams}{dead} || {};
is_deeply($dead->{failures_by_cause}, { connect_refused => 2, no_live_upstreams => 1 },
    'dead: failures_by_cause counts no_live_upstreams at upstream level');
is_deeply($dead->{failures}, { total => 3, by_cause => $dead->{failures_by_cause} },
    'dead: failures = the peers\' + the upstream\'s own');
is(peer($j, 'dead', "127.0.0.1:$_")->{failures}{total}, 1, "dead: peer $_ has 1 failure")
    for $c4, $c5;
is($dead->{totals}{unhealthy}, 2, 'dead: both peers unhealthy (unavailable)');
is($dead->{totals}{failures}, 3, 'dead: totals.failures');
is($dead->{zone}, 'dead_zone', 'dead: zone');
is($dead->{keepalive}, undef, 'dead: keepalive null');
is_deeply(peer($j, 'slow', $silent->addr)->{failures}{by_cause}, { read_timeout => 1 },
    'slow: read_timeout');
is(scalar(keys %{ $j->{upstreams} }), 3, 'three upstreams');

# --- ?upstream= and ?state=
my ($f) = get_json('/status?upstream=app', '?upstream=app');
is_deeply([ keys %{ $f->{upstreams} } ], ['app'], '?upstream=app: only app');
is_deeply($f->{upstreams}{app}{totals}, $app->{totals}, '?upstream=app: same totals');
my @by_state = (
    [ up        => { app => [ $ok->addr, "127.0.0.1:$c3" ], dead => [], slow => [ $silent->addr ] } ],
    [ down      => { app => ["127.0.0.1:$c2"], dead => [], slow => [] } ],
    [ unhealthy => { app => ["127.0.0.1:$c1"], dead => [ "127.0.0.1:$c4", "127.0.0.1:$c5" ],
                     slow => [] } ],
);
for my $case (@by_state) {
    my ($state, $want) = @$case;
    my ($s, $body) = get_json("/status?state=$state", "?state=$state");
    push @docs, $body;
    my %got = map { $_ => [ map { $_->{name} } @{ $s->{upstreams}{$_}{peers} } ] }
        keys %{ $s->{upstreams} };
    is_deeply(\%got, $want, "?state=$state: the peers listed");
    is_deeply($s->{upstreams}{app}{totals}, $app->{totals},
        "?state=$state: totals stay those of the whole upstream");
}
my ($both, $body) = get_json('/status?upstream=dead&state=unhealthy', '?upstream=dead&state=unhealthy');
push @docs, $body;
is_deeply([ map { $_->{name} } @{ $both->{upstreams}{dead}{peers} } ],
    [ "127.0.0.1:$c4", "127.0.0.1:$c5" ], 'both filters');
is_deeply([ keys %{ $both->{upstreams} } ], ['dead'], 'both filters: one upstream');
my ($explicit, $b2) = get_json('/status/json', 'triage_status json');
ok(exists $explicit->{upstreams}{app}, 'triage_status json: the same document');

# --- HEAD, other methods
my $h = $t->http('main', '/status', method => 'HEAD');
is($h->{status}, 200, 'HEAD: 200');
is($h->{headers}{'content-type'}, 'application/json', 'HEAD: Content-Type');
is($h->{headers}{'cache-control'}, 'no-store', 'HEAD: Cache-Control');
ok(($h->{headers}{'content-length'} // 0) > 1000, 'HEAD: Content-Length of the document');
is($h->{body}, '', 'HEAD: no body');
for my $m (qw(POST PUT DELETE PATCH)) {
    my $r = $t->http('main', '/status', method => $m, body => $m eq 'DELETE' ? '' : '{}');
    is($r->{status}, 405, "$m: 405");
    is($r->{headers}{allow}, 'GET, HEAD', "$m: Allow: GET, HEAD");
    is($r->{headers}{'cache-control'}, 'no-store', "$m: Cache-Control: no-store");
}

# --- reload: generation 2, a later load_time, counters kept
$t->reload($conf, %vars);
my ($after, $b3) = get_json('/status', 'after reload');
push @docs, $b3;
is($after->{generation}, 2, 'generation 2 after a reload');
ok(epoch($after->{load_time}) >= $lt, 'load_time of the reload');
is($after->{upstreams}{app}{failures}{total}, 1, 'counters kept across the reload');

# --- every real document is valid against the schema ...
my ($valid, $out) = validate_json($t, @docs);
ok($valid, 'every document validates against docs/status.schema.json (' . scalar(@docs) . ')')
    or diag($out);
# ... and the validator really validates: documents broken on purpose are refused
my @broken;
for my $break (
    sub { $_[0]{upstreams}{app}{peers}[0]{state} = 'sideways' },
    sub { delete $_[0]{upstreams}{app}{totals}{unhealthy} },
    sub { $_[0]{upstreams}{app}{failures_by_cause}{made_up} = 1 },
    sub { $_[0]{upstreams}{app}{peers}[1]{last_failure}{phase} = 'teleport' },
    sub { $_[0]{time} = 'yesterday' },
    sub { $_[0]{upstreams}{app}{peers}[0]{extra} = 1 },
) {
    my $d = decode_json($raw);
    $break->($d);
    push @broken, encode_json($d);
}
my ($v2, $out2) = validate_json($t, @broken);
ok(!$v2, 'documents broken on purpose are invalid');
my $files = () = $out2 =~ /^ok: /mg;
is($files, 0, 'none of the 6 broken documents passes') or diag($out2);

$t->stop;
done_testing;
