#!/usr/bin/perl
# Active health checks detect and recover in time, and probe exactly once per peer per
# interval for the whole instance (worker_processes 2), counted at the backend:
# - the seed block's directives (interval=3000 rise=2 fall=2 timeout=1000 type=http,
#   HEAD /health, http_2xx http_3xx) against a healthy and a dead peer;
# - short intervals: a failing health endpoint (bad_status), recovery, a killed peer
#   (connect_refused), each within fall (rise) x interval + timeout + a tick margin, logged
#   at warn, shown in the status `health` object; no request reaches a peer once it is
#   marked down.
#   Run alone: prove -v t/checks_detect.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time sleep);
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(status_json peer wait_state count_requests crash_lines);

my $MARGIN = 0.3;    # timer granularity, status polling, a loaded machine

# --- the seed block ------------------------------------------------------------------
{
    my $t = Triage::Harness->new(name => 'checks_detect_seed');
    my $ok = $t->backend('ok');
    my $dead = Triage::Backend::closed_port();
    my $t0 = time;
    $t->start(<<'CONF', OK => $ok->addr, DEAD => $dead);
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 64; }
http {
    access_log off;
    upstream backend {
        server %%OK%%;
        server 127.0.0.1:%%DEAD%%;
        check interval=3000 rise=2 fall=2 timeout=1000 type=http;
        check_http_send "HEAD /health HTTP/1.0\r\n\r\n";
        check_http_expect_alive http_2xx http_3xx;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://backend; }
        location = /status { triage_status; }
    }
}
CONF
    my $dead_addr = "127.0.0.1:$dead";
    # first check within the first second (spread), the second one interval later
    my $limit = 1 + 2 * 3 + 1 + $MARGIN;
    my $up = wait_state($t, 'backend', $ok->addr, 'up', $limit);
    ok($up, 'seed: the healthy peer is up after rise=2 checks') or diag(explain(status_json($t)));
    my $down = wait_state($t, 'backend', $dead_addr, 'unhealthy', $limit - (time - $t0));
    ok($down, 'seed: the dead peer is unhealthy after fall=2 checks');
    is($down && $down->{health}{last_error}, 'connect_refused', 'seed: last_error connect_refused');
    is($down && $down->{health}{type}, 'http', 'seed: health.type http');
    ok($t->wait_error_log(qr/\[warn\] .*upstream backend peer \Q$dead_addr\E is unhealthy: connect_refused after 2 checks/),
       'seed: the transition is logged at warn');
    ok($t->wait_error_log(qr/\[warn\] .*upstream backend peer \Q${\ $ok->addr}\E is healthy after 2 checks/),
       'seed: the healthy verdict is logged');
    my @probes = $ok->requests;
    ok(@probes >= 2 && !grep({ $_ ne 'HEAD /health HTTP/1.0' } @probes),
       'seed: the backend received check_http_send as written: HEAD /health HTTP/1.0')
        or diag(explain(\@probes));
    my @st = map { $t->http('main', "/app$_")->{status} } 1 .. 6;
    is_deeply(\@st, [(200) x 6], 'seed: every request is served by the healthy peer');
    is(scalar(crash_lines($t)), 0, 'seed: no alert, crit or crash in error.log');
    $t->stop;
}

# --- short intervals -------------------------------------------------------------------
my ($interval, $rise, $fall, $timeout) = (300, 2, 3, 500);
my $t = Triage::Harness->new;
my $a = $t->backend('ok');
my $b = $t->backend('ok');
$t->start(<<'CONF', A => $a->addr, B => $b->addr, CHECK => "interval=$interval rise=$rise fall=$fall timeout=$timeout type=http");
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 64; }
http {
    access_log off;
    upstream app {
        server %%A%%;
        server %%B%%;
        check %%CHECK%%;
        check_http_send "GET /health HTTP/1.0\r\n\r\n";
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; proxy_next_upstream off; }
        location = /status { triage_status; }
    }
}
CONF
my ($A, $B) = ($a->addr, $b->addr);
ok(wait_state($t, 'app', $B, 'up', 2) && wait_state($t, 'app', $A, 'up', 1), 'both peers up');

# exactly one probe per peer per interval, whatever the number of workers
{
    my $n0 = count_requests($b, qr{^GET /health});
    my $t0 = time;
    sleep 3;    # measuring a rate over a fixed window, not waiting for an event
    my $n1 = count_requests($b, qr{^GET /health});
    my $span = time - $t0;
    my $want = $span * 1000 / $interval;
    my $got = $n1 - $n0;
    ok(abs($got - $want) <= 1.5, sprintf('one probe per interval with 2 workers: %d probes in %.2fs (expected %.1f)', $got, $span, $want));
    my @pids = $t->worker_pids;
    is(scalar @pids, 2, 'two workers run');
}

# traffic reaches both peers while healthy
my @st = map { $t->http('main', "/app/before$_")->{status} } 1 .. 10;
is_deeply(\@st, [(200) x 10], 'healthy: requests succeed');
ok(count_requests($b, qr{^GET /app/before}) > 0, 'healthy: peer B receives traffic');

# the health endpoint fails: bad_status
{
    my $t0 = time;
    $b->set_health(503);
    my $p = wait_state($t, 'app', $B, 'unhealthy', 5);
    my $took = time - $t0;
    ok($p, 'failing health endpoint: peer B becomes unhealthy');
    my $limit = ($fall * $interval + $timeout) / 1000 + $MARGIN;
    ok($took <= $limit, sprintf('detected in %.2fs (fall x interval + timeout = %.2fs, + margin)', $took, $limit - $MARGIN));
    my $h = $p ? $p->{health} : {};
    is($h->{last_error}, 'bad_status', 'health.last_error bad_status');
    is($h->{last_status}, 503, 'health.last_status 503');
    ok(defined $h->{last_passed} && !$h->{last_passed}, 'health.last_passed false');
    is($h->{state}, 'unhealthy', 'health.state unhealthy');
    ok($h->{fall_count} >= $fall, "health.fall_count >= $fall");
    is($h->{unhealthy}, 1, 'health.unhealthy counts one transition');
    ok($h->{checks} > $h->{fails} && $h->{fails} >= $fall, 'health.checks and fails');
    like($h->{since} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'health.since is RFC 3339');
    like($h->{last_check} // '', qr/^\d{4}-/, 'health.last_check is RFC 3339');
    ok($t->wait_error_log(qr/\[warn\] .*upstream app peer \Q$B\E is unhealthy: bad_status after $fall checks/),
       'transition logged at warn');

    # zero requests reach the unhealthy peer, in either worker
    my $before = count_requests($b, qr{^GET /app});
    my @st = map { $t->http('main', "/app/after$_")->{status} } 1 .. 20;
    is_deeply(\@st, [(200) x 20], 'unhealthy peer out: every request is served');
    is(count_requests($b, qr{^GET /app}) - $before, 0, 'no request reached the unhealthy peer');
    is(count_requests($a, qr{^GET /app/after}), 20, 'the healthy peer served all 20');
    my $down_ms = $h->{downtime_ms};
    ok(defined $down_ms, 'health.downtime_ms present');
}

# recovery
{
    my $t0 = time;
    $b->set_health(undef);
    my $p = wait_state($t, 'app', $B, 'up', 5);
    my $took = time - $t0;
    ok($p, 'recovered: peer B is up again');
    my $limit = ($rise * $interval + $timeout) / 1000 + $MARGIN;
    ok($took <= $limit, sprintf('recovered in %.2fs (rise x interval + timeout = %.2fs, + margin)', $took, $limit - $MARGIN));
    ok($t->wait_error_log(qr/\[warn\] .*upstream app peer \Q$B\E is healthy after $rise checks/),
       'recovery logged at warn');
    ok($p && $p->{health}{downtime_ms} > 0, 'health.downtime_ms counts the time it was down');
    my $before = count_requests($b, qr{^GET /app});
    $t->http('main', "/app/back$_") for 1 .. 10;
    ok(count_requests($b, qr{^GET /app}) > $before, 'the recovered peer receives traffic again');
}

# the peer dies: connect_refused
{
    my $t0 = time;
    $b->stop;
    my $p = wait_state($t, 'app', $B, 'unhealthy', 5);
    my $took = time - $t0;
    ok($p, 'killed peer: unhealthy');
    my $limit = ($fall * $interval + $timeout) / 1000 + $MARGIN;
    ok($took <= $limit, sprintf('killed peer detected in %.2fs (limit %.2fs + margin)', $took, $limit - $MARGIN));
    is($p && $p->{health}{last_error}, 'connect_refused', 'killed peer: last_error connect_refused');
    is($p && $p->{health}{unhealthy}, 2, 'health.unhealthy counts the second transition');
    my @st = map { $t->http('main', "/app/dead$_")->{status} } 1 .. 10;
    is_deeply(\@st, [(200) x 10], 'killed peer out of rotation: no 502 with proxy_next_upstream off');
}

is(scalar(crash_lines($t)), 0, 'no alert, crit or crash in error.log');
$t->stop;

# --- the probes' own error lines ----------------------------------------------------------
# At nginx's usual levels they stay out of error.log (the checks report them); with
# `error_log ... info` nginx writes them, ending with the peer and upstream being checked.
for my $level (qw(notice info)) {
    my $t = Triage::Harness->new(name => "checks_detect_log_$level");
    my $reset = $t->backend('reset');
    $t->start(<<'CONF', RESET => $reset->addr, LEVEL => $level);
%%LOAD_MODULE%%
error_log logs/error.log %%LEVEL%%;
events { worker_connections 64; }
http {
    access_log off;
    upstream resets {
        server %%RESET%%;
        check interval=100 rise=1 fall=1 timeout=1000 type=http;
    }
    server { listen 127.0.0.1:%%PORT_main%%; location = /status { triage_status; } }
}
CONF
    ok(wait_until(sub { $reset->count >= 3 }, 5, 0.05), "$level: the peer got 3 probes");
    ok($t->wait_error_log(qr/upstream resets peer \S+ is unhealthy/), "$level: the transition is logged");
    my $re = qr/\[error\] .*\(104: Connection reset by peer\) while checking peer \Q${\ $reset->addr}\E of upstream "resets"$/m;
    if ($level eq 'info') {
        ok($t->wait_error_log($re), 'info: a probe\'s reset is logged, naming the peer and the upstream');
    } else {
        unlike($t->error_log_since(0), qr/Connection reset/, 'notice: probes\' resets stay out of error.log');
    }
    $t->stop;
}
done_testing;
