#!/usr/bin/perl
# What an http check judges, and what a tcp check does: expected statuses (classes of
# check_http_expect_alive, codes and ranges of check_http_expect_status), the body regex of
# check_http_expect_body, the default request (GET / with Host = upstream name), port=, UCM's
# forms of check_http_expect_alive and check_http_send given twice.
# Hostile targets mark the peer down with the right reason and crash nothing: garbage,
# never-ending headers, slow drip, silence, RST, close before answering.
#   Run alone: prove -v t/checks_http.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(status_json peer settled no_crash);

my $t = Triage::Harness->new;
my $closed = Triage::Backend::closed_port();
my %h = (
    garbage => $t->backend('custom', respond => "SSH-2.0-OpenSSH_9.2\r\n", then => 'keep'),
    endless => $t->backend('custom', then => 'keep',
        respond => "HTTP/1.1 200 OK\r\n" . ("X-Endless: " . ('a' x 50) . "\r\n") x 1000),
    drip    => $t->backend('drip', every => 0.05, for => 0.7),
    silent  => $t->backend('silent'),
    reset   => $t->backend('reset'),
    close   => $t->backend('close'),
);
my $chunked = $t->backend('custom', then => 'close',
    respond => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst \r\nb\r\nsecond part\r\n0\r\n\r\n");
my $sockdir = $t->subdir('sock');
my $unix = $t->backend('ok', unix => "$sockdir/app.sock");
my %reason = (
    garbage => 'invalid_header',
    endless => 'header_too_big',
    drip    => 'read_timeout',
    silent  => 'read_timeout',
    reset   => 'connection_reset',
    close   => 'premature_close',
);

my $check = 'check interval=200 rise=1 fall=1 timeout=500 type=http;';
# name => [check_http_send path or undef for the default request, extra directives, expected
#          state, expected last_error, expected last_status]
my %http = (
    range_204    => ['/s204', 'check_http_expect_status 200-299;', 'up'],
    code_301     => ['/s301', 'check_http_expect_status 200-299 301;', 'up'],
    default_301  => ['/s301', '', 'up'],
    default_404  => ['/s404', '', 'unhealthy', 'bad_status', 404],
    alive_4xx    => ['/s404', 'check_http_expect_alive http_4xx;', 'up'],
    range_503    => ['/s503', 'check_http_expect_status 200-299;', 'unhealthy', 'bad_status', 503],
    alive_5xx_only => ['/s200', 'check_http_expect_alive http_5xx;', 'unhealthy', 'bad_status', 200],
    body_ok      => ['/s200', 'check_http_expect_body ~ "all OK$";', 'up'],
    body_caseless => ['/s200', 'check_http_expect_body ~* "ALL ok";', 'up'],
    body_bad     => ['/degraded', 'check_http_expect_body ~ "OK";', 'unhealthy', 'body_mismatch', 200],
    default_request => [undef, 'check_http_expect_body ~ "^host=default_request via GET$";', 'up'],
    # as in UCM: the classes of two check_http_expect_alive add up (in any case), and of two
    # check_http_send the last one is sent
    alive_twice  => ['/s404', 'check_http_expect_alive http_2xx; check_http_expect_alive HTTP_4XX;', 'up'],
    send_twice   => ['/s404', 'check_http_send "GET /s200 HTTP/1.0\r\n\r\n";', 'up'],
);

my $ups = '';
for my $name (sort keys %http) {
    my ($path, $extra) = @{ $http{$name} };
    my $send = defined $path ? qq{check_http_send "GET $path HTTP/1.0\\r\\n\\r\\n";} : '';
    $ups .= "    upstream $name { server 127.0.0.1:%%PORT_self%%; $check $send $extra }\n";
}
for my $name (sort keys %h) {
    $ups .= "    upstream hostile_$name { server ${\ $h{$name}->addr }; $check }\n";
}

$t->start(<<"CONF", CLOSED => $closed);
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 256; }
http {
    access_log off;
$ups
    upstream body_chunked {
        server ${\ $chunked->addr };
        $check
        check_http_send "GET /chunked HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n";
        check_http_expect_body ~ "^first second part\$";
    }
    upstream unix_http {
        server ${\ $unix->addr };
        $check
        check_http_send "GET /health HTTP/1.0\\r\\n\\r\\n";
    }
    upstream dd_false { server 127.0.0.1:%%CLOSED%%; check interval=5000 rise=2 fall=2 timeout=500 default_down=false; }
    upstream dd_true { server 127.0.0.1:%%PORT_self%%; check interval=5000 rise=2 fall=2 timeout=500; }
    upstream tcp_up { server 127.0.0.1:%%PORT_self%%; check interval=200 rise=1 fall=1 timeout=500; }
    upstream tcp_refused { server 127.0.0.1:%%CLOSED%%; check interval=200 rise=1 fall=1 timeout=500 type=tcp; }
    upstream tcp_port { server 127.0.0.1:%%CLOSED%%; check interval=200 rise=1 fall=1 timeout=500 type=tcp port=%%PORT_self%%; }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location = /status { triage_status; }
        location /dd_true/ { proxy_pass http://dd_true; }
    }
    server {
        listen 127.0.0.1:%%PORT_self%%;
        location = /s200 { return 200 "all OK"; }
        location = /s204 { return 204; }
        location = /s301 { return 301 /elsewhere; }
        location = /s404 { return 404; }
        location = /s503 { return 503; }
        location = /degraded { return 200 "service: degraded"; }
        location = / { return 200 "host=\$host via \$request_method"; }
    }
}
CONF

my @workers = $t->worker_pids;

# before a verdict (interval=5000, rise=fall=2: none within this test)
{
    my $j = status_json($t);
    my $f = peer($j, 'dd_false', "127.0.0.1:$closed");
    is($f && $f->{state}, 'up', 'default_down=false: a new peer takes traffic before its checks');
    is($f && $f->{health}{state}, 'checking', 'default_down=false: health.state checking');
    my $d = peer($j, 'dd_true', '127.0.0.1:' . $t->port('self'));
    is($d && $d->{state}, 'checking', 'default_down=true: a new peer is checking, out of rotation');
    is($t->http('main', '/dd_true/x')->{status}, 502, 'default_down=true: no request goes to it before rise checks pass');
}


my $self = '127.0.0.1:' . $t->port('self');
for my $name (sort keys %http) {
    my (undef, undef, $state, $err, $status) = @{ $http{$name} };
    my $p = settled($t, $name, $self, $state, $err);
    is($p && $p->{state}, $state, "$name: $state");
    if ($err) {
        is($p && $p->{health}{last_error}, $err, "$name: last_error $err");
        is($p && $p->{health}{last_status}, $status, "$name: last_status $status");
    } else {
        ok($p && $p->{health}{last_passed}, "$name: the last check passed");
    }
}

for my $name (sort keys %h) {
    my $p = settled($t, "hostile_$name", $h{$name}->addr, 'unhealthy', $reason{$name});
    is($p && $p->{health}{last_error}, $reason{$name}, "hostile $name: unhealthy, $reason{$name}")
        or diag(explain($p));
}
{
    my $p = settled($t, 'body_chunked', $chunked->addr, 'up');
    is($p && $p->{state}, 'up', 'chunked body: decoded, then matched');
}
{
    my $p = settled($t, 'unix_http', $unix->addr, 'up');
    is($p && $p->{health}{last_status}, 200, 'a unix socket peer is checked over its socket');
}
ok($h{garbage}->connections > 0 && $h{reset}->count > 0, 'hostile peers were really contacted');

{
    my $p = settled($t, 'tcp_up', $self, 'up');
    is($p && $p->{health}{type}, 'tcp', 'tcp (default type): up on connect');
    ok($p && !defined $p->{health}{last_status}, 'tcp: no HTTP status');
    $p = settled($t, 'tcp_refused', "127.0.0.1:$closed", 'unhealthy', 'connect_refused');
    is($p && $p->{health}{last_error}, 'connect_refused', 'tcp: refused');
    $p = settled($t, 'tcp_port', "127.0.0.1:$closed", 'up');
    is($p && $p->{state}, 'up', 'port=: the check goes to the given port, not the peer\'s');
}

no_crash($t, \@workers);
$t->stop;
done_testing;
