#!/usr/bin/perl
# A real uWSGI behind uwsgi_pass, making its own faults, over TCP and a unix socket: a
# request bigger than its buffer-size (4 KB by default: a long query string or cookies),
# which it drops unanswered, and a worker killed by its harakiri timeout. nginx logs a reset
# or a premature close for both; the hint names buffer-size for the first, harakiri for the
# second. And proxy_pass to its uwsgi-protocol socket, which closes the plain HTTP request:
# the hint says uwsgi_pass.
#   Run alone: prove -v t/causes_uwsgi.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(log_format_directive);
use Triage::Uwsgi;
use Triage::Verdict qw(access_verdict);

plan skip_all => 'uwsgi is not installed (apt-get install uwsgi-core uwsgi-plugin-python3; .ci/run installs them)'
    unless Triage::Uwsgi::binary();

my @F = qw(request_uri status triage_cause triage_errno triage_phase triage_peer triage_hint);

my $app = <<'PY';
import time

def app(environ, start_response):
    if 'slow' in environ.get('PATH_INFO', '/'):
        time.sleep(60)          # uWSGI's harakiri kills the worker first
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'all OK\n']
PY

my $t = Triage::Harness->new;
my $addr = '127.0.0.1:' . $t->port('uwsgi');
my $sock = $t->subdir('sock') . '/uwsgi.sock';
# harakiri 6: uWSGI kills a worker busy with one request for more than 6 s
my @args = ('--harakiri', 6);
my $tcp  = Triage::Uwsgi->start($t, listen => $addr, app => $app, args => \@args);
my $unix = Triage::Uwsgi->start($t, listen => $sock, app => $app, args => \@args);

my $params = join ' ', map { "uwsgi_param $_->[0] $_->[1];" } (
    [REQUEST_METHOD => '$request_method'], [QUERY_STRING => '$query_string'],
    [PATH_INFO => '$document_uri'], [SERVER_PROTOCOL => '$server_protocol'],
    [SERVER_NAME => 'localhost'], [SERVER_PORT => '$server_port']);
$t->start(<<"CONF", LOG_FORMAT => log_format_directive('triage', @F));
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log triage;
    uwsgi_read_timeout 30s;
    server {
        listen 127.0.0.1:%%PORT_main%%;
        large_client_header_buffers 4 16k;
        location /tcp/  { uwsgi_pass $addr; $params }
        location /unix/ { uwsgi_pass unix:$sock; $params }
        # the classic mistake: proxy_pass to uWSGI's --socket, which speaks the uwsgi protocol
        location /proxy_tcp/  { proxy_pass http://$addr; }
        location /proxy_unix/ { proxy_pass http://unix:$sock:/; }
    }
}
CONF

my $big = '?q=' . ('x' x 5000);
my $bufsize = qr/uWSGI drops a request bigger than its buffer-size .*uwsgi --buffer-size 32768\)$/;
my %case = (
    '/tcp/ok'        => { status => 200 },
    '/unix/ok'       => { status => 200 },
    "/tcp/big$big"   => { peer => $addr, hint => $bufsize },
    "/unix/big$big"  => { peer => "unix:$sock", hint => $bufsize },
    '/tcp/slow'      => { peer => $addr, hint => qr/5 s or more after the request: .*uwsgi harakiri/, slow => 1 },
    '/unix/slow'     => { peer => "unix:$sock", hint => qr/uwsgi harakiri/, slow => 1 },
    '/proxy_tcp/x'   => { peer => $addr, hint => qr/; a TLS port closes the same way on plain HTTP \(then proxy_pass https:\/\/\), and so does a uWSGI socket \(then uwsgi_pass\)$/ },
    '/proxy_unix/x'  => { peer => "unix:$sock", hint => qr/; a uWSGI socket \(uwsgi --socket\) closes a plain HTTP request the same way \(then uwsgi_pass, or uwsgi --http-socket\)$/ },
);
my $err = qr/(?:upstream prematurely closed connection|recv\(\) failed \(104: Connection reset by peer\)) while reading response header from upstream/;

# the two slow ones at once (one worker each), then the rest once uWSGI has new workers
my %slow;
for my $u (grep { $case{$_}{slow} } sort keys %case) {
    $slow{$u} = $t->conn('main') or BAIL_OUT("connect to nginx: $!");
    $slow{$u}->send_request(GET => $u);
}
for my $u (sort keys %slow) {
    my $r = $slow{$u}->read_response(timeout => 20);
    is($r->{status}, 502, "$u: 502 once harakiri kills the worker") or diag($r->{error});
    $slow{$u}->close;
}
for my $u (grep { !$slow{$_} } sort keys %case) {
    my $r = $t->http('main', $u);
    is($r->{status}, $case{$u}{status} // 502, substr($u, 0, 12) . ": status " . ($case{$u}{status} // 502));
}

for my $u (sort keys %case) {
    my $e = $case{$u};
    next if $e->{status};
    # (nginx cuts an error.log line at 2 KB: the long request line is matched by its start)
    access_verdict($t, \@F, $u, name => substr($u, 0, 12), request => substr($u, 0, 40),
                   cause => qr/^(?:premature_close|connection_reset)$/, phase => 'read_header',
                   peer => $e->{peer}, hint => $e->{hint}, err => $err);
}
like($tcp->log, qr/invalid request block size: \d+ \(max 4096\)/, "uWSGI's log: the request was over its buffer-size");
like($tcp->log, qr/HARAKIRI ON WORKER/, "uWSGI's log: harakiri killed the worker");

$t->stop;
done_testing;
