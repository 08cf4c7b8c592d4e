#!/usr/bin/perl
# Self-test of the harness and backends on nginx WITHOUT the module (passes on
# any stock nginx): HTTP client features, request counting, log helpers,
# reload, nginx -t.   Run alone: prove -v t/00_harness.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use Triage::Harness qw(log_format_directive);
use Triage::Backend;

my $t = Triage::Harness->new;
my $ok     = $t->backend('ok', body => "hello\n");
my $silent = $t->backend('silent');
my $http10 = $t->backend('custom', respond => "HTTP/1.0 200 OK\r\n\r\nstreamed body", then => 'close');
my $sockdir = $t->subdir('sock');
my $unix = $t->backend('ok', unix => "$sockdir/ok.sock", body => "via unix\n");
my @F = qw(request_uri status upstream_addr http_x_test);

my $conf = <<'CONF';
worker_processes 1;
events { worker_connections 64; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log h;
    proxy_read_timeout 1s;
    server {
        listen 127.0.0.1:%%PORT_main%%;
        keepalive_requests 100;
        location /ok      { proxy_pass http://%%OK%%; }
        location /chunked { proxy_pass http://%%HTTP10%%; }
        location /unix    { proxy_pass http://%%UNIX%%:; }
        location /echo    { return 200 "x-test=$http_x_test gen=%%GEN%%\n"; }
    }
}
CONF
my %v = (LOG_FORMAT => log_format_directive('h', @F), OK => $ok->addr,
         HTTP10 => $http10->addr, UNIX => $unix->addr, GEN => 1);
$t->start($conf, %v);

my $r = $t->http('main', '/ok');
is($r->{status}, 200, 'GET through nginx');
is($r->{body}, "hello\n", 'body');
is($r->{headers}{'content-length'}, 6, 'headers are parsed');

$r = $t->http('main', '/ok', method => 'HEAD');
is($r->{status}, 200, 'HEAD');
is($r->{body}, '', 'HEAD has no body');

$r = $t->http('main', '/echo', headers => { 'X-Test' => 'abc' });
like($r->{body}, qr/x-test=abc/, 'custom header sent');

$r = $t->http('main', '/unix');
is($r->{body}, "via unix\n", 'unix socket backend (workers run as nobody)');

$r = $t->http('main', '/chunked');
is($r->{headers}{'transfer-encoding'}, 'chunked', 'nginx chunks a body of unknown length');
is($r->{body}, 'streamed body', 'chunked body decoded');

{
    my $c = $t->conn('main');
    my @s = map { $c->request(GET => "/ok?ka$_")->{status} } 1 .. 3;
    is_deeply(\@s, [200, 200, 200], 'three requests on one keep-alive connection');
    $c->close;
}
is($ok->count, 5, 'backend counted the requests it read (2 + 3 keep-alive)');
is(($ok->requests)[0], 'GET /ok HTTP/1.0', 'backend records request lines');

{   # client timeout against a backend that never answers (directly, not via nginx)
    my $c = Triage::Harness::Conn->new($silent->port);
    my $t0 = time;
    my $r = $c->request(GET => '/', timeout => 0.3);
    is($r->{status}, 0, 'timeout gives status 0');
    like($r->{error}, qr/timeout/, 'timeout is reported');
    ok(time - $t0 < 1, 'timeout is honoured');
    $c->close;
}

my $lines = $t->wait_access_log('access.log', 8, fields => \@F);
is(scalar @$lines, 8, 'access log lines');
is($lines->[0]{upstream_addr}, $ok->addr, 'parsed access log fields');
is($lines->[0]{http_x_test}, '', 'unset variable ("-") is parsed as empty');
my $rec = $t->find_access('access.log', \@F, request_uri => '/echo');
is($rec && $rec->{http_x_test}, 'abc', 'find_access');

# reload with a changed config
my @old = $t->worker_pids;
is(scalar @old, 1, 'one worker');
$t->reload($conf, %v, GEN => 2);
like($t->http('main', '/echo')->{body}, qr/gen=2/, 'reload applied the new config');
my @new = $t->worker_pids;
ok(@new == 1 && $new[0] != $old[0], 'worker replaced');
ok($t->wait_error_log(qr/\[notice\] .*reconfiguring/), 'wait_error_log');

# a failing reload is reported, nginx keeps running
eval { $t->reload("events {}\nhttp { bogus_directive; }\n") };
like($@, qr/reload failed.*unknown directive "bogus_directive"/s, 'failed reload is detected');
is($t->http('main', '/ok')->{status}, 200, 'still serving after a failed reload');

# nginx -t
my ($rc, $out) = $t->test_config("events {}\nhttp {\n    proxy_buffering maybe;\n}\n");
isnt($rc, 0, 'nginx -t fails on a bad config');
like($out, qr/\[emerg\] invalid value "maybe" .* in \Q${\ $t->conf_file }\E:3$/m, 'message with file:line');
is($t->line_of(qr/proxy_buffering/), 3, 'line_of');

$t->stop;
ok(!kill(0, $new[0]) && !$t->master_pid, 'stopped');

# backends: the connect-timeout listener really drops SYNs on this kernel
{
    my $bh = $t->backend('blackhole');
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $bh->port,
                                  Proto => 'tcp', Timeout => 0.5);
    ok(!$s, 'connect to the blackhole backend times out');
}

done_testing;
