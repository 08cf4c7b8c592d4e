package Triage::Checks;

# Helpers for the active health-check tests (t/checks_*.t), and for any test that reads the
# triage status JSON or checks error.log for crashes: read a peer (and its `health`), wait
# for a state, count what a backend received.
#
#   my $j = status_json($t, '/status');                  # decoded triage status (or {})
#   my $p = peer($j, 'backend', '127.0.0.1:8081');       # the peer's object, or undef
#   my $z = zone_metrics($t, 'triage_check');           # {size, entries, reused, full} ({})
#   my $p = wait_state($t, 'backend', $addr, 'unhealthy', 5);   # peer once state matches
#   my $p = settled($t, 'backend', $addr, 'unhealthy', 'bad_status'); # ... and last_error (5 s)
#   my $n = count_requests($b, qr{^GET /app});           # backend requests matching
#   my @bad = crash_lines($t);                          # alert/crit lines, crashed workers
#   no_crash($t, \@workers);                            # ... none, and the same workers (2 tests)
#   start_checked($t, 'check type=mysql;', { db => [$addr, ...] });  # nginx, an upstream each
#   expect_verdicts($t, 'mysql', { db => [$addr, 'unhealthy', 'connect_refused'] });

use strict;
use warnings;

use JSON::PP ();
use Time::HiRes qw(time);
use Triage::Harness qw(wait_until);

use Exporter 'import';
our @EXPORT_OK = qw(status_json peer zone_metrics wait_state settled wait_health count_requests crash_lines
                    no_crash start_checked expect_verdicts);

our $STATUS = '/status';

sub status_json {
    my ($t, $path) = @_;
    my $r = $t->http('main', $path // $STATUS);
    return {} unless $r->{status} == 200;
    return eval { JSON::PP::decode_json($r->{body}) } || {};
}

# The zone's samples in the status metrics (nginx_triage_zone_*{zone="NAME"}), by the
# family's last word: size (bytes), entries, reused, full (0 or 1).
sub zone_metrics {
    my ($t, $zone, $path) = @_;
    my $r = $t->http('main', ($path // $STATUS) . '?format=prometheus');
    return {} unless $r->{status} == 200;
    my %z;
    $z{$1} = $2 while $r->{body} =~ /^nginx_triage_zone_(size|entries|reused|full)\w*\{zone="\Q$zone\E"\} (\d+)$/mg;
    return \%z;
}

sub peer {
    my ($j, $up, $name) = @_;
    my $u = $j->{upstreams}{$up} or return undef;
    my ($p) = grep { ($_->{name} // '') eq $name } @{ $u->{peers} || [] };
    return $p;
}

# wait_state($t, $upstream, $peer, $state, $timeout): the peer's object once its `state` is
# $state (undef at the deadline).
sub wait_state {
    my ($t, $up, $name, $state, $timeout) = @_;
    return wait_until(sub {
        my $p = peer(status_json($t), $up, $name);
        return $p && ($p->{state} // '') eq $state ? $p : undef;
    }, $timeout // 5, 0.02);
}

# settled($t, $upstream, $peer, $state, $last_error): the peer's object once its state (and,
# if given, health.last_error) match; the last object seen at the deadline (5 s).
sub settled {
    my ($t, $up, $name, $state, $err) = @_;
    my $p;
    wait_until(sub {
        $p = peer(status_json($t), $up, $name);
        $p && $p->{state} eq $state && (!defined $err || ($p->{health}{last_error} // '') eq $err);
    }, 5, 0.05);
    return $p;
}

# wait_health($t, $upstream, $peer, sub { $h }, $timeout): the peer's health object once
# the condition holds.
sub wait_health {
    my ($t, $up, $name, $cond, $timeout) = @_;
    return wait_until(sub {
        my $p = peer(status_json($t), $up, $name) or return undef;
        my $h = $p->{health} or return undef;
        return $cond->($h) ? $h : undef;
    }, $timeout // 5, 0.02);
}

sub count_requests {
    my ($b, $re) = @_;
    return scalar grep { $_ =~ $re } $b->requests;
}

# Lines that mean something went wrong inside nginx: alerts, crits, crashed workers.
sub crash_lines {
    my ($t) = @_;
    return grep { /\[(alert|crit|emerg)\]|exited on signal|core dumped/ }
        split /\n/, $t->error_log_since(0);
}

# no_crash($t, \@workers): two tests, the workers are still those started (none died and was
# replaced) and error.log has no crash_lines.
sub no_crash {
    my ($t, $workers) = @_;
    Test::More::is_deeply([$t->worker_pids], $workers, 'no worker died');
    Test::More::is(scalar(crash_lines($t)), 0, 'no alert, crit or crash in error.log')
        or Test::More::diag(join "\n", crash_lines($t));
}

# start_checked($t, $check, { upstream => [peer, ...] }): start nginx (2 workers) with one
# upstream per entry, its peer (the entry's first element) checked by $check, and on
# PORT_main /status (triage_status) and /cs (check_status json). Returns the worker pids.
sub start_checked {
    my ($t, $check, $ups) = @_;
    my $blocks = join '', map { "    upstream $_ { server $ups->{$_}[0]; $check }\n" } sort keys %$ups;
    $t->start(<<"CONF");
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 256; }
http {
    access_log off;
$blocks
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location = /status { triage_status; }
        location = /cs { check_status json; }
    }
}
CONF
    return $t->worker_pids;
}

# expect_verdicts($t, $type, { upstream => [peer, state, last_error, last_status] }): for each
# upstream (sorted by name), once its peer settled (5 s): its state, health.type $type, and
# last_error, or without one that the last check passed; last_status where the entry has a
# fourth element (undef: the check reads no status).
sub expect_verdicts {
    my ($t, $type, $ups) = @_;
    for my $name (sort keys %$ups) {
        my ($peer, $state, $err, @status) = @{ $ups->{$name} };
        my $p = settled($t, $name, $peer, $state, $err);
        Test::More::is($p && $p->{state}, $state, "$name: $state")
            or Test::More::diag(Test::More::explain($p));
        Test::More::is($p && $p->{health}{type}, $type, "$name: health.type $type");
        if ($err) {
            Test::More::is($p && $p->{health}{last_error}, $err, "$name: last_error $err");
        } else {
            Test::More::ok($p && $p->{health}{last_passed}, "$name: the last check passed");
        }
        next unless @status;
        Test::More::is($p && $p->{health}{last_status}, $status[0],
            "$name: last_status " . ($status[0] // 'null'));
    }
}

1;
