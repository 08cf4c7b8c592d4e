#!/usr/bin/perl
# Shared-memory failure counters across 2 workers, the triage_status JSON, and
# their survival across a reload (HUP), and across one that fails.
#   Run alone: prove -v t/counters.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use JSON::PP;
use Test::More;
use Time::Local qw(timegm);
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(peer);

my $t = Triage::Harness->new;
my $silent = $t->backend('silent');
my $reset  = $t->backend('reset');
my $ok     = $t->backend('ok');
my ($c1, $c2, $c3) = map { Triage::Backend::closed_port() } 1 .. 3;

my %vars = (C1 => $c1, C2 => $c2, C3 => $c3, SILENT => $silent->addr,
            RESET => $reset->addr, OK => $ok->addr, ZONE => '1m', MORE_LISTEN => '');

# app_pair: max_fails=0 and proxy_next_upstream error => every request tries both
# peers, whatever the round-robin position in each worker: counts are exact.
my $conf = <<'CONF';
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 128; }
http {
    triage_zone %%ZONE%%;
    log_format counters '$request_uri|$status|$upstream_addr|$pid';
    access_log logs/access.log counters;
    proxy_connect_timeout 1s;
    proxy_read_timeout 1s;
    proxy_next_upstream off;

    upstream app_refused { server 127.0.0.1:%%C1%%; }
    upstream app_timeout { server %%SILENT%%; }
%%PAIR_UPSTREAM%%
    upstream app_ok      { server %%OK%%; }

    server {
        listen 127.0.0.1:%%PORT_main%%;
%%MORE_LISTEN%%
        location /refused  { proxy_pass http://app_refused; }
        location /timeout  { proxy_pass http://app_timeout; }
%%PAIR_LOCATION%%
        location /ok       { proxy_pass http://app_ok; }
        location /implicit { proxy_pass http://127.0.0.1:%%C3%%; }
        location = /status { triage_status; access_log off; }
    }
}
CONF
my %with_pair = (
    PAIR_UPSTREAM => $t->render(
        "    upstream app_pair { server 127.0.0.1:%%C2%% max_fails=0; server %%RESET%% max_fails=0; }",
        %vars),
    PAIR_LOCATION =>
        "        location /pair { proxy_next_upstream error timeout; proxy_pass http://app_pair; }",
);

$t->start($conf, %vars, %with_pair);

# --- traffic: 5 x refused (2 fresh connections + 3 on one keep-alive connection),
#     2 x read timeout (concurrent), 3 x pair (refused + reset each), 2 x implicit, 2 x ok
my @pending;
for my $i (1 .. 2) {
    my $c = $t->conn('main') or BAIL_OUT("connect: $!");
    $c->send_request(GET => "/timeout?$i");
    push @pending, $c;
}
is($t->http('main', "/refused?$_")->{status}, 502, "/refused?$_: 502") for 1 .. 2;
{
    my $ka = $t->conn('main');
    for my $i (3 .. 5) {
        my $r = $ka->request(GET => "/refused?$i");
        is($r->{status}, 502, "/refused?$i: 502 on a keep-alive connection");
    }
    $ka->close;
}
is($t->http('main', "/pair?$_")->{status}, 502, "/pair?$_: 502") for 1 .. 3;
is($t->http('main', "/implicit?$_")->{status}, 502, "/implicit?$_: 502") for 1 .. 2;
is($t->http('main', "/ok?$_")->{status}, 200, "/ok?$_: 200") for 1 .. 2;
for my $c (@pending) {
    is($c->read_response(timeout => 10)->{status}, 504, 'read timeout: 504');
    $c->close;
}
# all 14 proxied requests are finished (and counted) once they are logged
my @fields = qw(uri status upstream_addr pid);
my $logged = $t->wait_access_log('access.log', 14, fields => \@fields);
is(scalar @$logged, 14, '14 requests logged');

# Counters must be shared: make sure both workers served refused requests (fresh
# connections land on either worker; bounded number of extra requests).
my $refused = 5;
my %pids = map { $_->{pid} => 1 } grep { $_->{uri} =~ m{^/refused} } @$logged;
while (keys %pids < 2 && $refused < 60) {
    $refused++;
    $t->http('main', "/refused?$refused");
    $logged = $t->wait_access_log('access.log', 9 + $refused, fields => \@fields);
    $pids{ $logged->[-1]{pid} } = 1 if $logged->[-1]{uri} =~ m{^/refused};
}
is(scalar(keys %pids), 2, "refused requests were served by both workers ($refused requests)");
# sanity check of the set-up itself: each /pair request really tried both peers
is(scalar(grep { $_->{uri} =~ m{^/pair} && $_->{upstream_addr} =~ /^\S+, \S+$/ } @$logged), 3,
   'every /pair request tried both peers');

my $implicit = "127.0.0.1:$c3";

sub status_json {
    my $r = $t->http('main', '/status');
    is($r->{status}, 200, 'status: 200');
    like($r->{headers}{'content-type'} // '', qr{^application/json}, 'status: JSON content type');
    my $j = eval { decode_json($r->{body}) };
    ok($j, 'status: body is JSON') or diag("$@\n$r->{body}");
    $j ||= {};
    $j->{_raw} = $r->{body};
    return $j;
}

sub nonzero { my $h = shift || {}; return { map { $h->{$_} ? ($_ => $h->{$_}) : () } keys %$h } }

sub check_peer {
    my ($j, $up, $name, $total, $by_cause, $what) = @_;
    my $p = peer($j, $up, $name);
    ok($p, "$what: upstream $up has peer $name") or return;
    is($p->{failures}{total}, $total, "$what: $up/$name total $total");
    is_deeply(nonzero($p->{failures}{by_cause}), $by_cause, "$what: $up/$name by_cause");
    return $p;
}

sub rfc3339_epoch {
    my ($s) = @_;
    my ($Y, $M, $D, $h, $m, $sec, $tz) =
        $s =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$/ or return undef;
    my $e = timegm($sec, $m, $h, $D, $M - 1, $Y);
    if ($tz =~ /^([+-])(\d\d):(\d\d)$/) { $e -= ($1 eq '-' ? -1 : 1) * ($2 * 3600 + $3 * 60) }
    return $e;
}

sub check_all {
    my ($j, $what, $refused) = @_;
    my $p = check_peer($j, 'app_refused', "127.0.0.1:$c1", $refused,
                       { connect_refused => $refused }, $what);
    if ($p) {
        my $lf = $p->{last_failure} || {};
        is($lf->{cause}, 'connect_refused', "$what: last_failure.cause");
        is($lf->{errno}, 111, "$what: last_failure.errno is the number 111");
        is($lf->{phase}, 'connect', "$what: last_failure.phase");
        is($lf->{status}, 502, "$what: last_failure.status");
        my $e = rfc3339_epoch($lf->{time} // '');
        ok(defined $e && abs($e - time) < 300, "$what: last_failure.time is RFC 3339 and recent")
            or diag("time: " . ($lf->{time} // 'undef'));
        like($j->{_raw}, qr/"errno"\s*:\s*111\b/, "$what: errno is a JSON number");
    }
    my $pt = check_peer($j, 'app_timeout', $silent->addr, 2, { read_timeout => 2 }, $what);
    if ($pt) {
        is($pt->{last_failure}{cause}, 'read_timeout', "$what: app_timeout last_failure.cause");
        is($pt->{last_failure}{phase}, 'read_header', "$what: app_timeout last_failure.phase");
        is($pt->{last_failure}{status}, 504, "$what: app_timeout last_failure.status");
    }
    check_peer($j, $implicit, $implicit, 2, { connect_refused => 2 },
               "$what (implicit upstream named $implicit)");
    if (my $po = peer($j, 'app_ok', $ok->addr)) {
        is($po->{failures}{total} // 0, 0, "$what: app_ok peer has no failures");
    }
}

my $j = status_json();
like($j->{version} // '', qr/\S/, 'status: version');
is($j->{nginx_version}, $t->nginx_version, 'status: nginx_version');
check_all($j, 'before reload', $refused);
check_peer($j, 'app_pair', "127.0.0.1:$c2", 3, { connect_refused => 3 }, 'before reload');
my $pr = check_peer($j, 'app_pair', $reset->addr, 3, { connection_reset => 3 }, 'before reload');
is($pr && $pr->{last_failure}{errno}, 104, 'app_pair reset peer: last_failure.errno 104');
is($pr && $pr->{last_failure}{phase}, 'read_header', 'app_pair reset peer: last_failure.phase');

# --- reload without app_pair: the other counters survive, and keep counting
my @old = $t->worker_pids;
is(scalar @old, 2, 'two workers before reload');
$t->reload($conf, %vars, PAIR_UPSTREAM => '', PAIR_LOCATION => '');
my @new = $t->worker_pids;
is(scalar @new, 2, 'two new workers after reload');
ok(!(grep { my $o = $_; grep { $_ == $o } @new } @old), 'all workers replaced');

$j = status_json();
check_all($j, 'after reload', $refused);

is($t->http('main', "/refused?after$_")->{status}, 502, "/refused?after$_ after reload: 502") for 1 .. 2;
$t->wait_access_log('access.log', 9 + $refused + 2);
check_all(status_json(), 'after reload + 2 requests', $refused + 2);

# --- a reload that fails after nginx made its zones: a new triage_zone size makes a new zone,
#     and a listen on a port another socket holds fails later, so nginx unmaps that zone and
#     keeps the running configuration. Workers the master starts after that (here: both
#     killed, as the OOM killer does) count in the running zone. Before, they inherited the
#     address of the unmapped zone and died on signal 11 at their first count.
my $held = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
    or die "listen: $!";
my $mark = $t->error_log_mark;
$t->write_config($conf, %vars, PAIR_UPSTREAM => '', PAIR_LOCATION => '', ZONE => '2m',
    MORE_LISTEN => '        listen 127.0.0.1:' . $held->sockport . ';');
kill 'HUP', $t->master_pid;
ok(wait_until(sub { $t->error_log_since($mark) =~ /still could not bind\(\)/ }, 20),
    'a reload with triage_zone 2m and a port in use fails');
is_deeply([sort $t->worker_pids], [sort @new], 'the workers of the running configuration stay');
kill 'KILL', @new;
ok(wait_until(sub { my @w = $t->worker_pids; @w == 2 && !grep { my $o = $_; grep { $_ == $o } @new } @w }, 10),
    'both workers killed: the master starts two others');
is($t->http('main', "/refused?respawned$_")->{status}, 502, "/refused?respawned$_: 502") for 1 .. 3;
$t->wait_access_log('access.log', 9 + $refused + 5);
check_all(status_json(), 'after a failed reload and new workers', $refused + 5);
unlike($t->error_log_since($mark), qr/exited on signal (?!9\b)/, 'no worker died but those killed');

$t->stop;

# --- a literal proxy_pass rewritten with a variable at a reload (to have nginx resolve the
#     name at run time), then back: the entry of 127.0.0.1:PORT is the same, and it is
#     listed, and counts, as the configuration now says: a run-time upstream, then a
#     configured one, never both and never neither.
{
    my $r = Triage::Harness->new;
    my $port = Triage::Backend::closed_port();
    my $tmpl = <<'CONF';
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    access_log off;
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /p { %%PASS%% }
        location = /status { triage_status; }
    }
}
CONF
    my %literal = (PASS => "proxy_pass http://127.0.0.1:$port;");
    my %variable = (PASS => "set \$b 127.0.0.1:$port; proxy_pass http://\$b;");
    my $name = "127.0.0.1:$port";
    my $listed = sub {
        my $j = eval { decode_json($r->http('main', '/status')->{body}) } || {};
        my $u = $j->{upstreams}{$name} || {};
        my ($p) = @{ $u->{peers} || [] };
        return ($u->{dynamic} ? 'dynamic' : exists $j->{upstreams}{$name} ? 'configured' : 'absent',
            $p && $p->{failures}{total});
    };
    $r->start($tmpl, %literal);
    is($r->http('main', '/p')->{status}, 502, 'literal proxy_pass: 502');
    is_deeply([$listed->()], ['configured', 1], 'literal: a configured upstream, 1 failure');
    $r->reload($tmpl, %variable);
    is($r->http('main', '/p')->{status}, 502, 'the same address through a variable: 502');
    is_deeply([$listed->()], ['dynamic', 2], 'variable: a run-time upstream, the same entry, 2 failures');
    $r->reload($tmpl, %literal);
    is($r->http('main', '/p')->{status}, 502, 'literal again: 502');
    is_deeply([$listed->()], ['configured', 3], 'literal again: configured, 3 failures');
    my $raw = $r->http('main', '/status')->{body} // '';
    my $n = () = $raw =~ /"\Q$name\E":\{"/g;
    is($n, 1, 'listed once (one key in the raw JSON)');
    $r->stop;
}

# --- the smallest zone (64k, 64 entries) with 68 upstreams of one server each. The first 8,
#     whose names differ in length, are counted: the zone allocated names one by one, each
#     length class on a slab page of its own, and counted 2 of them ("full (1 peers)"). The
#     last upstreams find the zone full: they count nothing, but the recent failures have
#     their failures.
my $small = Triage::Harness->new;
my @varied = map { 'u' . ('x' x $_) } 1, 5, 20, 40, 70, 100, 150, 250;
my @names = (@varied, map { "n$_" } 1 .. 60);
my $ups = join '', map { "    upstream $_ { server 127.0.0.1:$c1; }\n" } @names;
my $locs = join '', map { "        location /$_ { proxy_pass http://$_; }\n" } @names;
$small->start(<<"CONF");
%%LOAD_MODULE%%
events { worker_connections 128; }
http {
    triage_zone 64k;
    access_log off;
$ups
    server {
        listen 127.0.0.1:%%PORT_main%%;
$locs
        location = /status { triage_status; }
    }
}
CONF
is($small->http('main', "/$_")->{status}, 502, 'triage_zone 64k: /u + ' . (length($_) - 1) . ' x: 502')
    for @varied;
is($small->http('main', '/n60')->{status}, 502, 'triage_zone 64k: /n60: 502');
my $sj = eval { decode_json($small->http('main', '/status')->{body}) } || {};
my @counted = grep { my $p = peer($sj, $_, "127.0.0.1:$c1"); $p && $p->{failures}{total} == 1 } @varied;
is(scalar @counted, scalar @varied, 'triage_zone 64k: each of the 8 upstreams counts its failure')
    or diag(join ' ', map { length } @counted);
like($small->error_log_since(0), qr/\[alert\] .*zone "triage" is full \(64 peers\), new peers are not counted/,
    'triage_zone 64k: the alert that the zone is full, at 64 entries');
unlike($small->error_log_since(0), qr/ngx_slab_alloc\(\) failed/,
    'triage_zone 64k: and not nginx\'s own message at each allocation that fails');
my $p60 = peer($sj, 'n60', "127.0.0.1:$c1");
is($p60 && $p60->{failures}{total}, 0, 'n60, with no room in the zone, counts nothing');
is((map { "$_->{upstream} $_->{path} $_->{cause}" } @{ $sj->{recent_failures} || [] })[0],
    'n60 /n60 connect_refused', 'the recent failures have its failure');

done_testing;
