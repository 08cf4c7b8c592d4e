#!/usr/bin/perl
# A real gunicorn behind proxy_pass, making its own faults: a worker killed outright
# (SIGKILL, as the OOM killer does) and a worker killed by gunicorn's own --timeout, over TCP
# and a unix socket. Both are "upstream prematurely closed connection" in error.log; the
# module tells the crash from the timeout by when it came, and the hint says which.
#   Run alone: prove -v t/causes_gunicorn.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(log_format_directive);
use Triage::Gunicorn;
use Triage::Verdict qw(access_verdict);

plan skip_all => 'gunicorn is not installed (apt-get install gunicorn; .ci/run installs it)'
    unless Triage::Gunicorn::binary();

my @F = qw(request_uri status triage_cause triage_errno triage_phase triage_peer triage_hint);

my $app = <<'PY';
import os, signal, time

def app(environ, start_response):
    path = environ.get('PATH_INFO', '/')
    if path.startswith('/slow'):
        time.sleep(60)          # gunicorn's --timeout kills the worker first
    if path.startswith('/crash'):
        os.kill(os.getpid(), signal.SIGKILL)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'all OK\n']
PY

my $t = Triage::Harness->new;
my $addr = '127.0.0.1:' . $t->port('gunicorn');
my $sock = $t->subdir('sock') . '/gunicorn.sock';
# --timeout 6: gunicorn kills a worker silent for more than 6 s; its arbiter looks once a
# second, and a sync worker reports when it takes the request, so 6 to 7 s after it came
my @args = ('--timeout', 6, '--graceful-timeout', 1);
my $tcp  = Triage::Gunicorn->start($t, listen => $addr, app => $app, args => \@args);
my $unix = Triage::Gunicorn->start($t, listen => $sock, app => $app, args => \@args);

$t->start(<<"CONF", LOG_FORMAT => log_format_directive('triage', @F));
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log triage;
    proxy_read_timeout 30s;
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /tcp/  { proxy_pass http://$addr/; }
        location /unix/ { proxy_pass http://unix:$sock:/; }
    }
}
CONF

my $err = qr/\[error\] .*upstream prematurely closed connection while reading response header from upstream/;
my %case = (
    '/tcp/ok'     => { status => 200 },
    '/unix/ok'    => { status => 200 },
    '/tcp/crash'  => { peer => $addr, hint => qr/^the backend closed the connection before answering: check its logs for crashes/ },
    '/unix/crash' => { peer => "unix:$sock", hint => qr/^the backend closed the connection before answering: check its logs for crashes, OOM kills or worker restarts; a uWSGI socket \(uwsgi --socket\) closes a plain HTTP request the same way/ },
    '/tcp/slow'   => { peer => $addr, hint => qr/5 s or more after the request: its own request timeout most likely killed it \(gunicorn --timeout/ },
    '/unix/slow'  => { peer => "unix:$sock", hint => qr/gunicorn --timeout/ },
);

# the two slow ones at once (one worker each), then the rest once gunicorn has new workers
my %slow;
for my $u ('/tcp/slow', '/unix/slow') {
    $slow{$u} = $t->conn('main') or BAIL_OUT("connect to nginx: $!");
    $slow{$u}->send_request(GET => $u);
}
for my $u (sort keys %slow) {
    my $r = $slow{$u}->read_response(timeout => 20);
    is($r->{status}, 502, "$u: 502 once gunicorn's --timeout kills the worker") or diag($r->{error});
    $slow{$u}->close;
}
for my $u (grep { !$slow{$_} } sort keys %case) {
    my $r = $t->http('main', $u);
    is($r->{status}, $case{$u}{status} // 502, "$u: status " . ($case{$u}{status} // 502));
}

for my $u (sort keys %case) {
    my $e = $case{$u};
    next if $e->{status};
    # nginx logs no errno for a close
    access_verdict($t, \@F, $u, cause => 'premature_close', errno => '', phase => 'read_header',
                   peer => $e->{peer}, hint => $e->{hint}, err => $err);
}
like($tcp->log, qr/WORKER TIMEOUT/, "gunicorn's log: the worker timed out");
like($tcp->log, qr/terminated due to signal 9/, "gunicorn's log: the worker was killed");

$t->stop;
done_testing;
