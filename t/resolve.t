#!/usr/bin/perl
# Peers that nginx adds and removes at run time: `server NAME resolve` in an upstream with a
# zone (nginx 1.27.3+), resolved through a local DNS server whose answers the test changes.
#
# Counting (upstream app): DNS names two addresses for its one server, 127.0.0.1 where a
# backend listens and 127.0.0.2 where nothing does (connect refused):
# - both peers in the status, named by address, with `server` as written;
# - refused tries counted on the 127.0.0.2 peer, named in $triage_peer;
# - DNS drops 127.0.0.2: it leaves the status, every request succeeds;
# - DNS brings it back: its counters are still there, and new failures add to them (the
#   peer's memory in the zone is new, so the per-worker cache must not trust old addresses).
#
# Active checks (upstream checked, `check type=http`): DNS adds the OK peer, the refused one
# and 127.0.0.3 where a backend accepts and never answers:
# - each run-time peer is checked: up, unhealthy (connect_refused), unhealthy (read_timeout);
#   the unhealthy ones get no request; check_status lists all three;
# - DNS drops two of them while their checks are in flight: they leave the status and
#   check_status, and nothing is left open (no alert at the reload below);
# - DNS brings the refused one back: it is unhealthy at once (its health was kept);
# - a reload keeps the run-time peers' health, as it does for configured peers, also one
#   that re-creates the checks' zone (check_shm_size);
# - no worker crashes, with 2 workers.
# Pods that come and go in full zones: the counters' (triage_zone idle=) and the checks'
# (check_shm_size 128k: the records of pods no worker checks any more go to new pods, and
# to servers a reload adds), each part described where it starts. A backup server with
# `resolve` and checks (the last part).
# Run alone: prove -v t/resolve.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep);
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(status_json peer zone_metrics crash_lines);

my $t = Triage::Harness->new;
my @v = split /\./, $t->nginx_version;
plan skip_all => "server ... resolve needs nginx 1.27.3 or newer (this is " . $t->nginx_version . ")"
    if ($v[0] * 1000 + $v[1]) * 1000 + $v[2] < 1027003;

my $ok = $t->backend('ok', body => 'ok');
my $P = $ok->port;
my ($live, $dead, $mute) = ("127.0.0.1:$P", "127.0.0.2:$P", "127.0.0.3:$P");
my $silent = $t->backend('silent', host => '127.0.0.3', port => $P);
my %answers = ('app.test' => ['127.0.0.1', '127.0.0.2'],
               'chk.test' => ['127.0.0.1', '127.0.0.2', '127.0.0.3']);
my $dns = $t->backend('dns', answers => \%answers);
# dns(name => [addresses]): change what DNS answers for that name, keep the others
sub dns { my %new = @_; %answers = (%answers, %new); $dns->set_answers(%answers) }

my $conf = <<'CONF';
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 128; }
http {
    log_format t '$uri|$status|$triage_cause|$triage_peer|$upstream_addr';
    access_log logs/access.log t;
    resolver 127.0.0.1:%%DNS%% valid=1s ipv6=off;
    resolver_timeout 2s;
    %%HTTP%%
    upstream app {
        zone app 64k;
        server app.test:%%P%% resolve max_fails=0;
    }
    upstream checked {
        zone checked 64k;
        server chk.test:%%P%% resolve max_fails=0;
        check interval=200 rise=1 fall=1 timeout=1000 type=http;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        proxy_next_upstream off;
        location /app { proxy_pass http://app; }
        location /app_fb { proxy_pass http://app; triage_fallback json; triage_fallback_details on; }
        location /checked { proxy_pass http://checked; }
        location = /status { triage_status; access_log off; }
        location = /check_status { check_status json; access_log off; }
    }
}
CONF
my %vars = (DNS => $dns->port, P => $P, HTTP => '');
$t->start($conf, %vars);

sub peers_of {
    my ($up) = @_;
    my $u = status_json($t)->{upstreams}{$up} or return ();
    return sort map { $_->{name} } @{ $u->{peers} || [] };
}

# nginx resolves in the background: wait until the status shows both peers.
ok(wait_until(sub { join(',', peers_of('app')) eq join(',', sort $live, $dead) }, 10),
   'app: both resolved addresses are peers in the status')
    or diag explain [peers_of('app')], [$dns->queries];
my $j = status_json($t);
is(peer($j, 'app', $_)->{server}, "app.test:$P", "$_: server as written") for $live, $dead;

# Requests alternate between the two (round robin in the zone, shared by the workers).
sub requests {
    my ($path, $n) = @_;
    my %st;
    $st{ $t->http('main', $path)->{status} }++ for 1 .. $n;
    return \%st;
}
my $st = requests('/app/1', 8);
ok($st->{200} && $st->{502} && $st->{200} + $st->{502} == 8, 'app: 200s and 502s, nothing else')
    or diag explain $st;
my $lines = $t->wait_access_log('access.log', 8, fields => [qw(uri status cause peer addr)]);
my @bad = grep { $_->{status} eq '502' } @$lines;
is(scalar @bad, $st->{502}, 'every 502 is in the access log');
is_deeply([ map { "$_->{cause} $_->{peer}" } @bad ], [ ("connect_refused $dead") x @bad ],
          'each 502: connect_refused at the 127.0.0.2 peer ($triage_cause, $triage_peer)');
is_deeply([ sort map { $_->{addr} } grep { $_->{status} eq '200' } @$lines ],
          [ ($live) x $st->{200} ], 'each 200: from the 127.0.0.1 peer');

my $failures = $st->{502};
my $p = wait_until(sub {
    my $p = peer(status_json($t), 'app', $dead);
    $p && ($p->{failures}{total} // 0) >= $failures ? $p : undef;
}, 5) || {};
is($p->{failures}{total}, $failures, "status: $dead has the $failures failures");
is_deeply($p->{failures}{by_cause}, { connect_refused => $failures }, "status: all connect_refused");

# DNS drops 127.0.0.2: nginx re-resolves once the answer's 1 s is up, and removes that peer.
dns('app.test' => ['127.0.0.1']);
ok(wait_until(sub { join(',', peers_of('app')) eq $live }, 10),
   'DNS without 127.0.0.2: the peer leaves the status') or diag explain [peers_of('app')];
is_deeply(requests('/app/2', 6), { 200 => 6 }, 'every request now succeeds');

# DNS brings it back: same address, new peer memory in the zone.
dns('app.test' => ['127.0.0.1', '127.0.0.2']);
ok(wait_until(sub { join(',', peers_of('app')) eq join(',', sort $live, $dead) }, 10),
   'DNS with 127.0.0.2 again: the peer is back') or diag explain [peers_of('app')];
is(peer(status_json($t), 'app', $dead)->{failures}{total}, $failures,
   'its counters were kept while it was gone');
$st = requests('/app/3', 8);
ok($st->{502}, 'the peer is tried again, and refused') or diag explain $st;
$failures += $st->{502} // 0;
$p = wait_until(sub {
    my $p = peer(status_json($t), 'app', $dead);
    $p && ($p->{failures}{total} // 0) >= $failures ? $p : undef;
}, 5) || {};
is($p->{failures}{total}, $failures, "new failures add to them ($failures in all)");
my $pl = peer(status_json($t), 'app', $live) || {};
is($pl->{failures}{total}, 0, "$live: no failures");

# DNS names no address: the upstream has no server left, and nginx answers "no live
# upstreams". Nothing failed (max_fails) and nothing is down: the hint says the names resolve
# to nothing.
dns('app.test' => []);
ok(wait_until(sub { my @p = peers_of('app'); !@p }, 15), 'DNS without any address: no peer left')
    or diag explain [peers_of('app')];
{
    my $r = $t->http('main', '/app_fb/4');
    is($r->{status}, 502, 'no server address: 502') or diag explain $r;
    my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
    is($j->{cause}, 'no_live_upstreams', 'no server address: no_live_upstreams');
    like($j->{hint} // '', qr/^the upstream has no server address now: the names of its servers \(server \.\.\. resolve\) resolve to nothing/,
         'no server address: the hint says the names resolve to nothing');
    ok($t->wait_error_log(qr/\[error\] .*no live upstreams while connecting to upstream.*"GET \/app_fb\/4 /),
       'no server address: error.log says "no live upstreams"');
}
dns('app.test' => ['127.0.0.1', '127.0.0.2']);
ok(wait_until(sub { join(',', peers_of('app')) eq join(',', sort $live, $dead) }, 10),
   'DNS names both addresses again: both peers are back') or diag explain [peers_of('app')];

# --- active checks of run-time peers (upstream checked)

# The peer's `health` in the status ({} while it has none), with its peer `state` added.
sub health_of {
    my ($name) = @_;
    my $p = peer(status_json($t), 'checked', $name) or return {};
    return { %{ $p->{health} || {} }, peer_state => $p->{state} };
}
sub ucm_peers {
    my $r = $t->http('main', '/check_status');
    my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
    return sort map { $_->{name} } grep { $_->{upstream} eq 'checked' }
        @{ $j->{servers}{server} || [] };
}

my $h = wait_until(sub {
    my %h = map { $_ => health_of($_) } $live, $dead, $mute;
    ($h{$live}{state} // '') eq 'up' && ($h{$dead}{last_error} // '') eq 'connect_refused'
        && ($h{$mute}{last_error} // '') eq 'read_timeout' ? \%h : undef;
}, 10) || { map { $_ => health_of($_) } $live, $dead, $mute };
is($h->{$live}{state}, 'up', "checked: $live is checked and up") or diag explain $h;
is_deeply([ @{ $h->{$dead} }{qw(state last_error)} ], [ 'unhealthy', 'connect_refused' ],
          "checked: $dead is checked and unhealthy (connect_refused)");
is_deeply([ @{ $h->{$mute} }{qw(state last_error)} ], [ 'unhealthy', 'read_timeout' ],
          "checked: $mute is checked and unhealthy (read_timeout)");
is($h->{$live}{type}, 'http', 'checked: health names the check type');
is_deeply(requests('/checked', 8), { 200 => 8 }, 'checked: no request reaches an unhealthy peer');
is(scalar(grep { m{^GET /checked} } $silent->requests), 0,
   'the silent peer got no client request (only checks, which it never answers)');
ok(scalar(grep { m{^GET / } } $silent->requests), 'it does get the checks');
is_deeply([ ucm_peers() ], [ sort $live, $dead, $mute ], 'check_status lists the three run-time peers');

# DNS drops the two unhealthy peers, whose checks are in flight most of the time (the silent
# one holds each for its 1 s timeout).
dns('chk.test' => ['127.0.0.1']);
ok(wait_until(sub { join(',', peers_of('checked')) eq $live }, 10),
   'DNS drops them: they leave the status') or diag explain [peers_of('checked')];
is_deeply([ ucm_peers() ], [ $live ], 'and check_status');
my $checks = $h->{$dead}{checks};

dns('chk.test' => ['127.0.0.1', '127.0.0.2']);
my $back = wait_until(sub {
    grep({ $_ eq $dead } peers_of('checked')) ? health_of($dead) : undef
}, 10) || {};
is_deeply([ @$back{qw(state peer_state)} ], [ 'unhealthy', 'unhealthy' ],
          "DNS brings $dead back: unhealthy at first sight (health kept)");
cmp_ok($back->{checks} // -1, '>=', $checks, 'its check count goes on');
is_deeply(requests('/checked', 6), { 200 => 6 }, 'and it gets no request');

# kept_across($what, @reload): reload (with $t->reload's arguments), then the refused
# run-time peer has the health it had before (state, check count, since) and still gets no
# request, and the OK one is still up.
sub kept_across {
    my ($what, @reload) = @_;
    my $before = health_of($dead);
    $t->reload(@reload);
    my $after = wait_until(sub {
        my $p = health_of($dead);
        defined $p->{state} ? $p : undef;
    }, 10) || {};
    is($after->{state}, 'unhealthy', "$what: still unhealthy");
    cmp_ok($after->{checks} // -1, '>=', $before->{checks} // 0, "$what: the check count goes on");
    ok(defined $before->{since} && ($after->{since} // '') eq $before->{since},
       "$what: unhealthy since the same time") or diag explain [ $before, $after ];
    is(health_of($live)->{state}, 'up', "$what: $live still up");
    is_deeply(requests('/checked', 6), { 200 => 6 }, "$what: no request to the unhealthy peer");
}

# A reload: new workers find the run-time peers' health where the old ones left it.
kept_across('after a reload');

# A reload that makes nginx re-create the checks' zone (larger): the state of run-time peers
# is carried into the new zone with that of the configured ones.
kept_across('new zone size', $conf, %vars, HTTP => 'check_shm_size 4m;');

is_deeply([ crash_lines($t) ], [], 'no alert, crit or crashed worker in error.log');
$t->stop;

# --- pods that come and go in a full counters' zone ---------------------------------------------
# The smallest zone (64 entries) with 25 upstreams (50 entries) and ten pods behind
# `server pods.test resolve`, in an upstream with a long name (200 bytes, as generated names
# can be). Each of five deploys replaces the ten pods: with idle=1s, the new ones take the
# entries of the old ones (idle, named by no configuration) and each is counted. Without the
# reuse only the 3 entries left would count; with the reuse but new bytes for each new
# peer's names, the zone's name room runs out at the first deploy (5 of 10 counted).
my $z = Triage::Harness->new;
my $gone = Triage::Backend::closed_port();
my $pods = 'pods-' . ('x' x 195);
my $pdns = $z->backend('dns', answers => { 'pods.test' => [ map { "127.0.1.$_" } 1 .. 10 ] });
my $fill = join '', map { "    upstream f$_ { server 127.0.0.1:$gone; }\n" } 1 .. 25;
$z->start(<<"CONF");
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    triage_zone 64k idle=1s;
    access_log off;
    resolver 127.0.0.1:@{[ $pdns->port ]} valid=1s ipv6=off;
$fill
    upstream $pods {
        zone pods 64k;
        server pods.test:$gone resolve max_fails=0;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        proxy_next_upstream off;
        location /pods { proxy_pass http://$pods; }
        location = /status { triage_status; }
    }
}
CONF
# The ten pods of deploy $d: 127.0.$d.1 .. 127.0.$d.10 (the address grows by a digit at 10).
sub pod_addrs { my ($d) = @_; return map { "127.0.$d.$_:$gone" } 1 .. 10 }
sub pod_failures {
    my ($d) = @_;
    my $j = status_json($z);
    return [ map { my $p = peer($j, $pods, $_); $p ? $p->{failures}{total} : 'none' } pod_addrs($d) ];
}
sub pods_up {
    my ($d) = @_;
    my $u = status_json($z)->{upstreams}{$pods} or return 0;
    return join(',', sort map { $_->{name} } @{ $u->{peers} || [] }) eq join(',', sort(pod_addrs($d)));
}
ok(wait_until(sub { pods_up(1) }, 10), 'pods: the ten first pods are peers');
$z->http('main', '/pods') for 1 .. 10;
is_deeply(pod_failures(1), [ (1) x 10 ], 'pods: each of the ten counts its refused request');
for my $d (2 .. 6) {
    sleep 1.2;    # the idle time under test
    $pdns->set_answers('pods.test' => [ map { "127.0.$d.$_" } 1 .. 10 ]);
    ok(wait_until(sub { pods_up($d) }, 10), "pods: deploy $d, ten other pods");
    $z->http('main', '/pods') for 1 .. 10;
    is_deeply(pod_failures($d), [ (1) x 10 ], "pods: deploy $d, each new pod counts its failure");
}
like($z->error_log_since(0), qr/\[notice\] .*are reused for new peers/, 'pods: the notice');
unlike($z->error_log_since(0), qr/new peers are not counted/, 'pods: no alert that the zone is full');
$z->stop;

# --- pods that come and go in a full checks' zone ---------------------------------------------
# check_shm_size 128k holds 367 health records besides the one configured peer. 200 checked
# pods behind two `server NAME resolve`; a deploy replaces them by 200 others: 167 fit, and
# the 33 others take the records of old pods once no worker has checked those for 10 s (the
# workers drop a pod DNS no longer gives). A reload then adds 40 configured peers, which the
# master registers in the full zone: they take records of old pods too. Without the reuse,
# 33 new pods and the 40 new servers would stay unchecked until a restart.
my $k = Triage::Harness->new;
sub pods_at { my ($net) = @_; return [ map { "127.0.$net.$_" } 1 .. 100 ] }
my $kdns = $k->backend('dns', answers => { 'pods.test' => pods_at(1), 'pods2.test' => pods_at(2) });
my $kconf = <<"CONF";
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 1024; }
http {
    access_log off;
    check_shm_size 128k;
    resolver 127.0.0.1:@{[ $kdns->port ]} valid=1s ipv6=off;
    upstream pods {
        zone pods 1m;
        server pods.test:$gone resolve max_fails=0;
        server pods2.test:$gone resolve max_fails=0;
        check interval=500 rise=1 fall=1 timeout=1000 type=tcp;
    }
    upstream fixed {
        server 127.0.0.1:$gone;
%%FIXED%%
        check interval=500 rise=1 fall=1 timeout=1000 type=tcp;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /pods { proxy_pass http://pods; }
        location /fixed { proxy_pass http://fixed; }
        location = /status { triage_status; }
    }
}
CONF
$k->start($kconf, FIXED => '');
# The peers of upstream $up in the status whose address is in one of 127.0.@nets.0/24, and
# how many of them are checked (unhealthy: nothing listens on their port).
sub checked_in {
    my ($up, @nets) = @_;
    my $u = status_json($k)->{upstreams}{$up} or return (0, 0);
    my $in = join '|', @nets;
    my @p = grep { $_->{name} =~ /^127\.0\.(?:$in)\./ } @{ $u->{peers} || [] };
    return (scalar @p, scalar grep {
        ($_->{health}{checks} // 0) > 0 && ($_->{health}{last_error} // '') eq 'connect_refused'
    } @p);
}
ok(wait_until(sub { my ($n, $c) = checked_in('pods', 1, 2); $n == 200 && $c == 200 }, 15, 0.2),
   'checks: the 200 first pods are checked') or diag explain [ checked_in('pods', 1, 2) ];
$kdns->set_answers('pods.test' => pods_at(3), 'pods2.test' => pods_at(4));
ok(wait_until(sub { my ($n) = checked_in('pods', 3, 4); $n == 200 && !(checked_in('pods', 1, 2))[0] },
              10, 0.2),
   'checks: a deploy, 200 other pods in the status') or diag explain [ checked_in('pods', 3, 4) ];
ok(wait_until(sub { (checked_in('pods', 3, 4))[1] == 200 }, 30, 0.2),
   'checks: each new pod is checked (old pods\' records reused)')
    or diag explain [ checked_in('pods', 3, 4) ];
my $klog = $k->error_log_since(0);
like($klog, qr/\[notice\] .*zone "triage_check" is full \(\d+ peers\): the records of peers that no worker has checked for 10 s are given to new peers \(the first: 127\.0\.[12]\.\d+:$gone in upstream "pods", server "pods2?\.test:$gone"\)/,
     'checks: the notice names the first pod whose record was given away');
like($klog, qr/\[alert\] .*zone "triage_check" is full/,
     'checks: the alert, while the old pods\' records were still fresh');
my $kz = zone_metrics($k, 'triage_check');
is_deeply([ @$kz{qw(size entries full)} ], [ 131072, 368, 1 ],
          'checks: the metrics say the zone is full (368 records in 128k)') or diag explain $kz;
is($kz->{reused}, 33, 'checks: and counts the records reused (33: 368 - 201 = 167 fit)');

$k->reload($kconf, FIXED => join '', map { "        server 127.0.5.$_:$gone;\n" } 1 .. 40);
ok(wait_until(sub { (checked_in('fixed', 5))[1] == 40 }, 10, 0.2),
   'checks: a reload adds 40 servers to the full zone: each is checked')
    or diag explain [ checked_in('fixed', 5) ];
is((checked_in('pods', 3, 4))[1], 200, 'checks: and the 200 pods still are');
is(zone_metrics($k, 'triage_check')->{reused}, $kz->{reused} + 40, 'checks: 40 more records reused');
is_deeply([ grep { !/zone "triage_check" is full/ } crash_lines($k) ], [],
          'checks: no other alert, no crashed worker');
$k->stop;

# --- a backup server with resolve, checked ---------------------------------------------------
# nginx keeps backup servers in a list of their own, with its own lock, which its resolver
# takes alone when DNS changes the backup's addresses; the checks set `down` in both lists.
# The primary server refuses: unhealthy, no request tries it; DNS moves the backup from
# 127.0.0.1 to 127.0.0.4: the new address is checked, and takes the requests.
{
    my $bt = Triage::Harness->new;
    my $one = $bt->backend('ok', body => 'one');
    my $bp = $one->port;
    my $four = $bt->backend('ok', body => 'four', host => '127.0.0.4', port => $bp);
    my $closed = Triage::Backend::closed_port();
    my $bdns = $bt->backend('dns', answers => { 'bk.test' => ['127.0.0.1'] });
    $bt->start(<<"CONF");
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 128; }
http {
    access_log off;
    resolver 127.0.0.1:@{[$bdns->port]} valid=1s ipv6=off;
    upstream bk {
        zone bk 64k;
        server 127.0.0.1:$closed;
        server bk.test:$bp resolve backup;
        check interval=200 rise=1 fall=1 timeout=500 type=http;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /bk { proxy_pass http://bk; }
        location = /status { triage_status; }
    }
}
CONF
    # the peers' states, in one string: "address=state ..." by address
    my $state = sub {
        my $j = status_json($bt);
        my %st = map { $_->{name} => $_->{state} } @{ $j->{upstreams}{bk}{peers} || [] };
        return join ' ', map { "$_=$st{$_}" } sort keys %st;
    };
    my $want = sub { my %st = @_; join ' ', map { "$_=$st{$_}" } sort keys %st };
    ok(wait_until(sub { $state->() eq $want->("127.0.0.1:$bp" => 'up', "127.0.0.1:$closed" => 'unhealthy') }, 10),
       'backup resolve: the backup up, the primary unhealthy') or diag $state->();
    my $mark = $bt->error_log_mark;
    my @bodies = map { $bt->http('main', "/bk?$_")->{body} } 1 .. 6;
    is_deeply(\@bodies, [("one") x 6], 'backup resolve: the backup answers');
    unlike($bt->error_log_since($mark), qr/connect\(\) failed/, 'and the primary is not tried');
    $bdns->set_answers('bk.test' => ['127.0.0.4']);
    ok(wait_until(sub { $state->() eq $want->("127.0.0.4:$bp" => 'up', "127.0.0.1:$closed" => 'unhealthy') }, 10),
       'backup resolve: DNS moves the backup, the new address is checked and up') or diag $state->();
    $mark = $bt->error_log_mark;
    @bodies = map { $bt->http('main', "/bk?n$_")->{body} } 1 .. 6;
    is_deeply(\@bodies, [("four") x 6], 'backup resolve: the new address answers');
    unlike($bt->error_log_since($mark), qr/connect\(\) failed/, 'and the primary is still not tried');
    is_deeply([ crash_lines($bt) ], [], 'backup resolve: no alert, no crashed worker');
    $bt->stop;
}

done_testing;
