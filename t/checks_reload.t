#!/usr/bin/perl
# Health state lives in shared memory keyed by upstream + server + address:
# - it survives `nginx -s reload` with a reordered server list (state follows the peer,
#   never its position), a new peer starts per default_down, a peer removed then added
#   again starts over; a reload that fails changes nothing;
# - the checking duty survives SIGKILL of a worker (2 workers: the other one goes on at
#   the same rate; 1 worker: the respawned one takes over within two intervals).
#   Run alone: prove -v t/checks_reload.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(status_json peer wait_state count_requests crash_lines);

my $tmpl = <<'CONF';
%%LOAD_MODULE%%
worker_processes %%WORKERS%%;
events { worker_connections 64; }
http {
    access_log off;
    %%HTTP%%
    upstream app {
%%SERVERS%%
        %%CHECK%%
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; proxy_next_upstream off; }
        location = /status { triage_status; }
        location = /cs { check_status csv; }
    }
}
CONF
my $CHECK = 'check interval=%%INTERVAL%% rise=2 fall=2 timeout=500 type=http;
        check_http_send "GET /health HTTP/1.0\r\n\r\n";';
$tmpl =~ s/%%CHECK%%/$CHECK/;

sub servers { join '', map { "        server $_;\n" } @_ }

{
    my $t = Triage::Harness->new;
    my %b = map { $_ => $t->backend('ok') } qw(A B C);
    my ($A, $B, $C) = map { $b{$_}->addr } qw(A B C);
    my %v = (WORKERS => 2, INTERVAL => 300, HTTP => '');
    $b{B}->set_health(503);
    $t->start($tmpl, %v, SERVERS => servers($A, $B));
    ok(wait_state($t, 'app', $A, 'up', 3), 'A up');
    my $pb = wait_state($t, 'app', $B, 'unhealthy', 3);
    ok($pb, 'B unhealthy');
    my $pa = peer(status_json($t), 'app', $A);

    # reload: reordered list, and a new peer C
    $t->reload($tmpl, %v, SERVERS => servers($C, $B, $A));
    my $j = status_json($t);
    my ($qa, $qb, $qc) = map { peer($j, 'app', $_) } $A, $B, $C;
    is($qb && $qb->{state}, 'unhealthy', 'after reload: B (now second) is still unhealthy');
    is($qa && $qa->{state}, 'up', 'after reload: A (now third) is still up');
    is($qb && $qb->{health}{unhealthy}, 1, 'after reload: B keeps its transition count');
    ok($qa && $qa->{health}{checks} >= $pa->{health}{checks}, 'after reload: A keeps its check count');
    ok($qb && $qb->{health}{checks} >= $pb->{health}{checks}, 'after reload: B keeps its check count');
    like($qc && $qc->{state} // '', qr/^(checking|up)$/, 'after reload: new peer C starts per default_down (checking)');
    is($qc && $qc->{health}{unhealthy}, 0, 'new peer C: no transition to unhealthy');

    my $before = count_requests($b{B}, qr{^GET /app});
    my @st = map { $t->http('main', "/app/r$_")->{status} } 1 .. 20;
    is_deeply(\@st, [(200) x 20], 'after reload: all served');
    is(count_requests($b{B}, qr{^GET /app}) - $before, 0, 'after reload: none reached unhealthy B');
    ok(wait_state($t, 'app', $C, 'up', 3), 'new peer C comes up after rise checks');

    # B leaves the configuration, then comes back: a new peer again
    $t->reload($tmpl, %v, SERVERS => servers($A, $C));
    ok(!peer(status_json($t), 'app', $B), 'B removed: no longer listed');
    $t->reload($tmpl, %v, INTERVAL => 2000, SERVERS => servers($A, $B, $C));
    my $rb = peer(status_json($t), 'app', $B);
    is($rb && $rb->{health}{unhealthy}, 0, 'B back after an absence: its state starts over');
    ok($rb && $rb->{health}{checks} < $qb->{health}{checks}, 'B back after an absence: check count starts over');

    # a larger zone (check_shm_size): nginx makes a new zone, the state is copied into it
    my $ja = peer(status_json($t), 'app', $A);
    $t->reload($tmpl, %v, HTTP => 'check_shm_size 4m;', SERVERS => servers($A, $B, $C));
    my $ka = peer(status_json($t), 'app', $A);
    is($ka && $ka->{state}, 'up', 'new zone size: A still up');
    ok($ka && $ka->{health}{checks} >= $ja->{health}{checks}, 'new zone size: A keeps its check count');
    like($ka && $ka->{health}{since} // '', qr/^\Q$ja->{health}{since}\E$/, 'new zone size: A keeps its since');

    # no check left: check_status answers an empty list, nothing is checked
    (my $nocheck = $tmpl) =~ s/check interval=.*?\n.*?\n//s;
    $t->reload($nocheck, %v, SERVERS => servers($A, $B));
    my $r = $t->http('main', '/cs');
    is($r->{status}, 200, 'no check configured: check_status answers');
    is($r->{body}, '', 'no check configured: no peer listed');
    my @st2 = map { $t->http('main', "/app/n$_")->{status} } 1 .. 4;
    is_deeply(\@st2, [(200) x 4], 'no check configured: B (failing /health) gets traffic again');
    ok(count_requests($b{B}, qr{^GET /app/n}) > 0, 'no check configured: B is in rotation');
    is(scalar(crash_lines($t)), 0, 'no alert, crit or crash in error.log');
    $t->stop;
}

# A reload that fails after nginx made its zones (a listen on a port in use comes later)
# changes nothing: a peer that the failed configuration lacked keeps its state at the next
# reload that succeeds. Before, the failed reload had moved the zone's generation on, and
# that peer started over (per default_down: out of rotation until its rise checks).
{
    my $t = Triage::Harness->new;
    my %b = map { $_ => $t->backend('ok') } qw(A B);
    my ($A, $B) = map { $b{$_}->addr } qw(A B);
    my %v = (WORKERS => 1, INTERVAL => 300, HTTP => '');
    $t->start($tmpl, %v, SERVERS => servers($A, $B));
    ok(wait_state($t, 'app', $B, 'up', 3), 'B up');
    my $held = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
        or die "listen: $!";
    my $in_use = 'listen 127.0.0.1:' . $held->sockport . ';';
    (my $bad = $tmpl) =~ s/(listen 127\.0\.0\.1:%%PORT_main%%;)/$1 $in_use/;
    my $mark = $t->error_log_mark;
    $t->write_config($bad, %v, SERVERS => servers($A));
    kill 'HUP', $t->master_pid;
    ok(wait_until(sub { $t->error_log_since($mark) =~ /still could not bind\(\)/ }, 20),
       'a reload without B, listening on a port in use, fails');
    my $pb = peer(status_json($t), 'app', $B);
    is($pb && $pb->{state}, 'up', 'after the failed reload: B up');
    $t->reload($tmpl, %v, INTERVAL => 2000, SERVERS => servers($A, $B));
    my $qb = peer(status_json($t), 'app', $B);
    is($qb && $qb->{state}, 'up', 'the next reload: B is still up');
    is($qb && $qb->{health}{since}, $pb && $pb->{health}{since}, 'the next reload: B keeps its since');
    is(scalar(grep { !/\[emerg\]/ } crash_lines($t)), 0, 'no alert, crit or crash in error.log');
    $t->stop;
}

# SIGKILL of a worker with 2 workers: the other one (and the respawned one) go on at the same rate
{
    my $t = Triage::Harness->new;
    my $a = $t->backend('ok');
    my $interval = 250;
    $t->start($tmpl, WORKERS => 2, INTERVAL => $interval, HTTP => '', SERVERS => servers($a->addr));
    ok(wait_state($t, 'app', $a->addr, 'up', 3), '2 workers: A up');
    my @w = $t->worker_pids;
    is(scalar @w, 2, '2 workers run');
    kill 'KILL', $w[0];
    my $n0 = count_requests($a, qr{^GET /health});
    my $t0 = time;
    sleep 2.5;    # measuring a rate over a fixed window
    my $got = count_requests($a, qr{^GET /health}) - $n0;
    my $want = (time - $t0) * 1000 / $interval;
    ok(abs($got - $want) <= 1.5, sprintf('after SIGKILL of a worker: %d probes in %.2fs (expected %.1f)', $got, time - $t0, $want));
    ok(wait_until(sub { my @n = $t->worker_pids; @n == 2 && !grep { $_ == $w[0] } @n }, 5),
       'the master respawned the killed worker');
    $t->stop;
}

# SIGKILL of the only worker: the respawned one takes over within two intervals
{
    my $t = Triage::Harness->new;
    my $a = $t->backend('ok');
    my $interval = 300;
    $t->start($tmpl, WORKERS => 1, INTERVAL => $interval, HTTP => '', SERVERS => servers($a->addr));
    ok(wait_state($t, 'app', $a->addr, 'up', 3), '1 worker: A up');
    my ($w) = $t->worker_pids;
    my $n0 = count_requests($a, qr{^GET /health});
    my $t0 = time;
    kill 'KILL', $w;
    my $resumed = wait_until(sub { count_requests($a, qr{^GET /health}) > $n0 ? time : 0 }, 5);
    ok($resumed, 'checks resume after SIGKILL of the only worker');
    ok($resumed && $resumed - $t0 <= 2 * $interval / 1000 + 0.3,
       sprintf('resumed within two intervals (%.2fs)', ($resumed || 0) - $t0));
    my ($w2) = $t->worker_pids;
    ok($w2 && $w2 != $w, 'a new worker runs the checks');
    $t->stop;
}

done_testing;
