#!/usr/bin/perl
# What the status counts per peer beyond failures: requests (every try), responses by
# status class, header and response times, the 1-minute failure rate, the hint of the
# most frequent recent cause, and the recent failures ring with the request it belonged
# to (method, path without query, $request_id as the access log shows it). With 2 workers:
# the counts are shared.   Run alone: prove -v t/status_counts.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(status_json peer);

my $t = Triage::Harness->new;
my $ok = $t->backend('ok');
my $own502 = $t->backend('bad_gateway');
my $closed = Triage::Backend::closed_port();

$t->start(<<'CONF', OK => $ok->addr, CLOSED => $closed, OWN502 => $own502->addr);
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 128; }
http {
    log_format ids '$request_uri|$status|$request_id|$pid';
    access_log logs/access.log ids;
    proxy_next_upstream off;

    # max_fails=0: the refused peer stays in rotation, every request tries both in turn
    upstream app {
        server %%OK%% max_fails=0;
        server 127.0.0.1:%%CLOSED%% max_fails=0;
    }
    upstream own { server %%OWN502%%; }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /app { proxy_next_upstream error; proxy_pass http://app; }
        location /own { proxy_pass http://own; }
        location = /__upstream_status { triage_status; access_log off; }
    }
}
CONF

sub status { status_json($t, '/__upstream_status') }

# 10 requests with proxy_next_upstream error over {ok, refused}: each request ends at the
# OK peer; those that started at the refused one made two tries.
my $n = 10;
for my $i (1 .. $n) {
    my $r = $t->http('main', "/app/$i?secret=$i");
    is($r->{status}, 200, "/app/$i: 200 in the end") or last;
}
my $lines = $t->wait_access_log('access.log', $n, fields => [qw(uri status request_id pid)]);
is(scalar @$lines, $n, "$n requests logged");
is($ok->count, $n, 'the OK backend served every request');

my $j = wait_until(sub {
    my $j = status();
    my $p = peer($j, 'app', $ok->addr);
    ($p->{requests} // 0) >= $n ? $j : undef;
}, 5) || status();

my $pok = peer($j, 'app', $ok->addr);
my $pbad = peer($j, 'app', "127.0.0.1:$closed");
is($pok->{requests}, $n, 'OK peer: one request per client request');
is($pok->{responses}{'2xx'}, $n, 'OK peer: all 2xx');
is($pok->{responses}{total}, $n, 'OK peer: responses total');
like($pok->{header_time}, qr/^\d+$/, 'OK peer: header_time is a number of ms');
like($pok->{response_time}, qr/^\d+$/, 'OK peer: response_time is a number of ms');
is($pok->{hint}, undef, 'OK peer: no hint');
cmp_ok($pbad->{requests}, '>=', 1, 'refused peer: its tries are counted as requests');
is($pbad->{failures}{total}, $pbad->{requests}, 'refused peer: every try failed');
is($pbad->{responses}{total}, 0, 'refused peer: no responses');
like($pbad->{hint} // '', qr/listen/i, 'refused peer: the connect_refused hint');

my $u = $j->{upstreams}{app};
is($u->{totals}{requests}, $n + $pbad->{requests}, 'upstream totals: requests of both peers');
my $rate = $pbad->{requests} / ($n + $pbad->{requests});
ok(abs(($u->{failure_rate_1m} // -1) - $rate) < 1e-6, "failure_rate_1m = failed tries / tries ($rate)")
    or diag("failure_rate_1m: " . ($u->{failure_rate_1m} // 'null'));

# The ring: newest first, the request it belonged to.
my $rf = $j->{recent_failures} || [];
cmp_ok(scalar @$rf, '>=', $pbad->{requests}, 'recent_failures lists the failed tries');
my $e = $rf->[0] || {};
is($e->{upstream}, 'app', 'recent: upstream');
is($e->{peer}, "127.0.0.1:$closed", 'recent: peer');
is($e->{cause}, 'connect_refused', 'recent: cause');
is($e->{errno}, 111, 'recent: errno');
is($e->{method}, 'GET', 'recent: method');
like($e->{path}, qr{^/app/\d+$}, 'recent: path without the query string');
my %id = map { ($_->{request_id} => $_->{uri}) } @$lines;
ok($e->{request_id} && $id{ $e->{request_id} }, 'recent: request_id is the one the access log has')
    or diag("request_id $e->{request_id}");
my @times = map { $_->{time} } @$rf;
is_deeply(\@times, [ sort { $b cmp $a } @times ], 'recent: newest first');

# The backend's own 502: a response (5xx), not a failure of nginx.
{
    my $r = $t->http('main', '/own');
    is($r->{status}, 502, '/own: the backend answers 502');
    my $p = wait_until(sub {
        my $p = peer(status(), 'own', $own502->addr);
        ($p->{requests} // 0) >= 1 ? $p : undef;
    }, 5) || {};
    is($p->{responses}{'5xx'}, 1, "/own: counted as a 5xx response");
    is($p->{failures}{total}, 0, '/own: not a failure of nginx');
}

$t->stop;
done_testing;
