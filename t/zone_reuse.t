#!/usr/bin/perl
# A full counters' zone reuses the entries of peers that no configuration names any more and
# that have been idle for `triage_zone ... idle=` (pods that come and go behind
# `server NAME resolve`, upstreams a reload removed, run-time names), instead of leaving new
# peers uncounted until a restart.
#
# 1. The smallest zone (64k, 64 entries) filled by 30 upstreams (60 entries), then a reload
#    to 30 other upstreams: with idle=1s, once the first ones have been idle for a second,
#    every new upstream is counted, and a notice says that entries are reused; with idle=off
#    (a reload to yet other upstreams), the zone is full as before: an alert, and the new
#    upstreams are not counted. With idle=10s and a reload at once, the first upstreams'
#    entries (never used, made a moment before) are not taken either.
# 2. Run-time upstreams (proxy_pass with variables) past their share (32 in 64k): a new name
#    goes to "(other run-time upstreams)" while the others are busy, and takes the entry of
#    one idle for a second after that.
#    Then 10 more rounds of 32 new names, each counted under its own name. Each reuse leaves
#    a tombstone in the zone's index and often takes an empty entry; once there are fewer
#    empty entries than tombstones (in this zone, about 9 rounds in: it depends on the
#    names' hashes) the index is rebuilt (shm_index's cargo test shows why), and the entries
#    it moved are still found.
# The waits are the idle time under test (1 s), not synchronisation.
# Run alone: prove -v t/zone_reuse.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use Triage::Harness;
use Triage::Backend;
use Triage::Checks qw(status_json peer zone_metrics);

my $closed = Triage::Backend::closed_port();
my $OTHER = '(other run-time upstreams)';

sub conf {
    my ($idle, $prefix, $n) = @_;
    my @names = map { "$prefix$_" } 1 .. ($n // 30);
    my $ups = join '', map { "    upstream $_ { server 127.0.0.1:$closed; }\n" } @names;
    my $locs = join '', map { "        location /$_ { proxy_pass http://$_; }\n" } @names;
    return <<"CONF";
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    triage_zone 64k idle=$idle;
    access_log off;
    proxy_next_upstream off;
$ups
    server {
        listen 127.0.0.1:%%PORT_main%%;
$locs
        location /dyn { proxy_pass http://127.0.0.\$arg_h:$closed; }
        location /dyn2 { proxy_pass http://127.0.\$arg_h:$closed; }
        location = /status { triage_status; }
    }
}
CONF
}

# each of the 30 upstreams /<prefix>N fails once; how many count it
sub counted {
    my ($t, $prefix) = @_;
    is($t->http('main', "/$prefix$_")->{status}, 502, "/$prefix$_: 502") for 1 .. 30;
    my $j = status_json($t, '/status');
    return scalar grep {
        my $p = peer($j, "$prefix$_", "127.0.0.1:$closed");
        $p && $p->{failures}{total} == 1
    } 1 .. 30;
}

# reload to 30 upstreams /<prefix>N with idle=$idle: the zone stays full, as without reuse:
# not all 30 are counted, and the alert says so
sub stays_full {
    my ($t, $idle, $prefix, $what) = @_;
    my $mark = $t->error_log_mark;
    $t->reload(conf($idle, $prefix));
    cmp_ok(counted($t, $prefix), '<', 30, "$what: after a reload to 30 others, not all are counted");
    like($t->error_log_since($mark), qr/\[alert\] .*zone "triage" is full \(\d+ peers\), new peers are not counted/,
        "$what: the alert that the zone is full");
    my $z = zone_metrics($t, 'triage');
    is_deeply([ @$z{qw(size entries full)} ], [ 65536, 64, 1 ],
              "$what: the metrics say the zone is full (64 entries of 64k)");
}

# --- 1. upstreams a reload removed ------------------------------------------------------------
my $t = Triage::Harness->new;
$t->start(conf('1s', 'a'));
is(counted($t, 'a'), 30, 'the first 30 upstreams are counted (60 of the 64 entries)');
is_deeply([ @{ zone_metrics($t, 'triage') }{qw(entries reused full)} ], [ 60, 0, 0 ],
          'the metrics: 60 entries, none reused, never full');
sleep 1.2;    # the idle time under test
my $mark = $t->error_log_mark;
$t->reload(conf('1s', 'b'));
is(counted($t, 'b'), 30, 'after a reload to 30 others, all of them are counted');
my $log = $t->error_log_since($mark);
like($log, qr/\[notice\] .*triage: zone "triage" \(\d+ entries\) or its run-time upstreams' share is full: entries that no configuration names and that have been idle for 1 s are reused for new peers, their counters dropped \(raise triage_zone to keep them\)/,
    'a notice says that entries are reused');
unlike($log, qr/new peers are not counted/, 'and no alert that the zone is full');
my $z = zone_metrics($t, 'triage');
is_deeply([ @$z{qw(entries reused full)} ], [ 64, 56, 0 ],
          'the metrics: 64 entries, 56 reused (4 were free), never full');

sleep 1.2;
stays_full($t, 'off', 'c', 'idle=off');
$t->stop;

# --- 1b. entries never used are idle from when they were made, not from the start of time:
#     the first upstreams, never requested, are not taken by a reload a moment later (the
#     status, for one, makes entries for peers before their first try)
$t = Triage::Harness->new;
$t->start(conf('10s', 'a'));
# the first ones, made a moment ago, are not idle
stays_full($t, '10s', 'b', 'idle=10s, a reload at once');
$t->stop;

# --- 2. run-time upstreams past their share -----------------------------------------------------
$t = Triage::Harness->new;
$t->start(conf('1s', 'r', 0));
my $name = sub { "127.0.0.$_[0]:$closed" };
my $c = $t->conn('main');
for my $h (1 .. 33) {
    my $r = $c->request('GET', "/dyn?h=$h");
    is($r->{status}, 502, "/dyn?h=$h: 502");
}
my $j = status_json($t, '/status');
my @named = grep { /^127\.0\.0\.\d+:/ } keys %{ $j->{upstreams} || {} };
is(scalar @named, 32, 'run-time: 32 named upstreams fill the share (one per 2 KB of 64k)');
is($j->{upstreams}{$OTHER}{failures_by_cause}{connect_refused}, 1,
    "run-time: the 33rd name, while the others are busy, goes to $OTHER");
sleep 1.2;
for my $h (34 .. 43) {
    my $r = $c->request('GET', "/dyn?h=$h");
    is($r->{status}, 502, "/dyn?h=$h: 502");
}
$j = status_json($t, '/status');
my @new = grep {
    my $p = peer($j, $name->($_), $name->($_));
    $p && $p->{failures}{by_cause}{connect_refused} == 1
} 34 .. 43;
is(scalar @new, 10, 'run-time: after a second idle, each of 10 new names is counted under its own name');
@named = grep { /^127\.0\.0\.\d+:/ } keys %{ $j->{upstreams} || {} };
is(scalar @named, 32, 'run-time: still 32 named upstreams (10 entries reused)');
like($t->error_log_since(0), qr/\[notice\] .*entries that no configuration names and that have been idle for 1 s are reused/,
    'run-time: the notice');
my $reused = zone_metrics($t, 'triage')->{reused};
my $ROUNDS = 10;
for my $round (1 .. $ROUNDS) {
    sleep 1.2;
    # /dyn2?h=R.N: proxy_pass to 127.0.R.N
    my @hosts = map { "$round.$_" } 1 .. 32;
    my @st = map { $c->request('GET', "/dyn2?h=$_")->{status} } @hosts;
    is_deeply(\@st, [(502) x 32], "run-time round $round: 32 new names, 502 each");
    $j = status_json($t, '/status');
    my @own = grep {
        my $n = "127.0.$_:$closed";
        my $p = peer($j, $n, $n);
        $p && $p->{failures}{by_cause}{connect_refused} == 1
    } @hosts;
    is(scalar @own, 32, "run-time round $round: each counted under its own name");
    @named = grep { /^127\.0\.\d+\.\d+:/ } keys %{ $j->{upstreams} || {} };
    is(scalar @named, 32, "run-time round $round: 32 named upstreams");
}
cmp_ok(zone_metrics($t, 'triage')->{reused} - $reused, '>=', $ROUNDS * 32,
    'run-time: each new name took the entries of an idle one');
$t->stop;

done_testing;
