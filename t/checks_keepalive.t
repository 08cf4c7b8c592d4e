#!/usr/bin/perl
# check_keepalive_requests N: an http check whose response allows it leaves its connection
# to the next check, up to N checks per connection (counted at the backend); a response
# that closes, or a peer that closes the kept connection, costs a new connection, never a
# failed check. A body too long to read to its end (a streaming health URL) ends the check
# at its status after 1 MB, and the connection is not kept.
#   Run alone: prove -v t/checks_keepalive.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(status_json peer crash_lines);

my $t = Triage::Harness->new;
my $keep = $t->backend('ok');       # HTTP/1.1 keep-alive
my $http10 = $t->backend('ok');     # answers HTTP/1.0 requests with Connection: close
my $closer = $t->backend('custom', then => 'close',
    respond => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");    # closes after each answer
# 3 MB of a body announced as 100 MB, then nothing more on that connection
my $endless = $t->backend('custom', then => 'keep',
    respond => "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n" . ('x' x 3_000_000));

my %addr = (KEEP => $keep->addr, HTTP10 => $http10->addr, CLOSER => $closer->addr,
    ENDLESS => $endless->addr);
$t->start(<<'CONF', %addr);
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 64; }
http {
    access_log off;
    upstream keep {
        server %%KEEP%%;
        check interval=100 rise=1 fall=1 timeout=500 type=http;
        check_http_send "GET /health HTTP/1.1\r\nHost: keep\r\n\r\n";
        check_keepalive_requests 4;
    }
    upstream http10 {
        server %%HTTP10%%;
        check interval=100 rise=1 fall=1 timeout=500 type=http;
        check_http_send "GET /health HTTP/1.0\r\n\r\n";
        check_keepalive_requests 4;
    }
    upstream closer {
        server %%CLOSER%%;
        check interval=100 rise=1 fall=1 timeout=500 type=http;
        check_http_send "GET /health HTTP/1.1\r\nHost: closer\r\n\r\n";
        check_keepalive_requests 100;
    }
    upstream endless {
        server %%ENDLESS%%;
        check interval=100 rise=1 fall=1 timeout=500 type=http;
        check_http_send "GET /health HTTP/1.1\r\nHost: endless\r\n\r\n";
        check_keepalive_requests 100;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location = /status { triage_status; }
    }
}
CONF

ok(wait_until(sub { $keep->count >= 12 && $http10->count >= 12 && $closer->count >= 12
                     && $endless->count >= 12 }, 5),
   'a dozen checks of each peer');
{
    my ($n, $c) = ($keep->count, $keep->connections);
    ok($c >= int($n / 4) && $c <= int($n / 4) + 1, "keep-alive: $n checks on $c connections (4 per connection)");
    ($n, $c) = ($http10->count, $http10->connections);
    ok($c >= $n, "HTTP/1.0 without keep-alive: $n checks on $c connections (one each)");
    ($n, $c) = ($endless->count, $endless->connections);
    ok($c >= $n, "a body not read to its end: $n checks on $c connections (one each)");
}
my $j = status_json($t);
for my $u (qw(keep http10 closer endless)) {
    my ($p) = @{ $j->{upstreams}{$u}{peers} || [] };
    is($p && $p->{state}, 'up', "$u: up");
    is($p && $p->{health}{fails}, 0, "$u: no failed check (a closed kept connection is replaced, not a failure)");
}
is(scalar(crash_lines($t)), 0, 'no alert, crit or crash in error.log');
$t->stop;
done_testing;
