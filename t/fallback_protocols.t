#!/usr/bin/perl
# triage_fallback in front of PHP-FPM and the other non-HTTP upstreams: fastcgi_pass to a
# unix socket with mode 000, a missing socket, a socket whose listen queue is full (php-fpm
# overloaded), the same sockets given through a variable (fastcgi_pass unix:$sock), a
# refused port, a silent and a closing peer; uwsgi_pass, scgi_pass and grpc_pass refused.
# The page names the cause nginx's error.log gives, the details (on) the socket, errno and
# hint (naming the module's own directives: fastcgi_read_timeout, not proxy_read_timeout),
# and without details no socket path leaves the server.
#   Run alone: prove -v t/fallback_protocols.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use Triage::Harness qw(log_format_directive);
use Triage::Backend;
use Triage::Checks qw(crash_lines);

my @F = qw(request_uri status triage_cause triage_errno request_id triage_hint);
my $t = Triage::Harness->new;
my $sockdir = $t->subdir('sock');
my %sock = map { $_ => "$sockdir/$_.sock" } qw(denied missing full denied_var missing_var);
my $denied = $t->backend('ok', unix => $sock{denied}, mode => 0000);
my $denied_var = $t->backend('ok', unix => $sock{denied_var}, mode => 0000);
my $full = $t->backend('blackhole', unix => $sock{full});
my $silent = $t->backend('silent', protocol => 'raw');
my $close = $t->backend('close', protocol => 'raw');
my $closed = Triage::Backend::closed_port();

$t->start(<<'CONF', LOG_FORMAT => log_format_directive('fb', @F), CLOSED => $closed,
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log fb;
    fastcgi_connect_timeout 1s;
    fastcgi_read_timeout 1s;

    server {
        listen 127.0.0.1:%%PORT_main%%;
        triage_fallback json;
        triage_fallback_details on;

        location /fpm/denied  { fastcgi_pass unix:%%DENIED%%; }
        location /fpm/missing { fastcgi_pass unix:%%MISSING%%; }
        location /fpm/full    { fastcgi_pass unix:%%FULL%%; }
        location /fpm/refused { fastcgi_pass 127.0.0.1:%%CLOSED%%; }
        location /fpm/silent  { fastcgi_pass %%SILENT%%; }
        location /fpm/close   { fastcgi_pass %%CLOSE%%; }
        # the socket chosen at run time, as configurations with one pool per PHP version do
        location /var/denied  { set $s %%DENIED_VAR%%; fastcgi_pass unix:$s; }
        location /var/missing { set $s %%MISSING_VAR%%; fastcgi_pass unix:$s; }

        location /uwsgi   { uwsgi_pass 127.0.0.1:%%CLOSED%%; }
        location /scgi    { scgi_pass 127.0.0.1:%%CLOSED%%; }
        location /grpc    { grpc_pass grpc://127.0.0.1:%%CLOSED%%; }

        # without details: nothing of the backend leaves the server
        location /quiet/  {
            triage_fallback_details off;
            location /quiet/denied { fastcgi_pass unix:%%DENIED%%; }
            location /quiet/full   { fastcgi_pass unix:%%FULL%%; }
        }
        location /html/denied { triage_fallback html; fastcgi_pass unix:%%DENIED%%; }
    }
}
CONF
    DENIED => $sock{denied}, MISSING => $sock{missing}, FULL => $sock{full},
    DENIED_VAR => $sock{denied_var}, MISSING_VAR => $sock{missing_var},
    SILENT => $silent->addr, CLOSE => $close->addr);

my $logged = 0;
sub get {
    my ($path) = @_;
    my $r = $t->http('main', $path);
    my $l = $t->wait_access_log('access.log', $logged + 1, fields => \@F);
    $logged = @$l;
    my ($line) = grep { $_->{request_uri} eq $path } @$l;
    $r->{log} = $line || {};
    $r->{json} = eval { JSON::PP::decode_json($r->{body}) } || {};
    return $r;
}

# path => [status, error, cause, errno, peer, hint pattern, error.log pattern]
my %case = (
    '/fpm/denied' => [ 502, 'bad_gateway', 'permission_denied', 13, "unix:$sock{denied}",
        qr/socket's owner and mode/, qr/connect\(\) to unix:\Q$sock{denied}\E failed \(13: Permission denied\)/ ],
    '/fpm/missing' => [ 502, 'bad_gateway', 'socket_not_found', 2, "unix:$sock{missing}",
        qr/unix socket does not exist/, qr/connect\(\) to unix:\Q$sock{missing}\E failed \(2: No such file or directory\)/ ],
    '/fpm/full' => [ 502, 'bad_gateway', 'other', 11, "unix:$sock{full}",
        qr/queue|backlog|overload/i, qr/connect\(\) to unix:\Q$sock{full}\E failed \(11: Resource temporarily unavailable\)/ ],
    '/fpm/refused' => [ 502, 'bad_gateway', 'connect_refused', 111, "127.0.0.1:$closed",
        qr/nothing listens .* does fastcgi_pass match its listen port/, qr/connect\(\) failed \(111: Connection refused\) while connecting to upstream/ ],
    '/fpm/silent' => [ 504, 'gateway_timeout', 'read_timeout', 110, $silent->addr,
        qr/did not answer in time: .*raise fastcgi_read_timeout$/, qr/upstream timed out \(110: Connection timed out\) while reading response header/ ],
    '/fpm/close' => [ 502, 'bad_gateway', 'premature_close', undef, $close->addr,
        qr/closed the connection before answering/, qr/upstream prematurely closed (FastCGI stdout|connection) while reading response header/ ],
    '/var/denied' => [ 502, 'bad_gateway', 'permission_denied', 13, "unix:$sock{denied_var}",
        qr/socket's owner and mode/, qr/connect\(\) to unix:\Q$sock{denied_var}\E failed \(13: Permission denied\)/ ],
    '/var/missing' => [ 502, 'bad_gateway', 'socket_not_found', 2, "unix:$sock{missing_var}",
        qr/unix socket does not exist/, qr/connect\(\) to unix:\Q$sock{missing_var}\E failed \(2: No such file or directory\)/ ],
);
$case{"/$_"} = [ 502, 'bad_gateway', 'connect_refused', 111, "127.0.0.1:$closed", qr/does ${_}_pass match/,
    qr/connect\(\) failed \(111: Connection refused\) while connecting to upstream/ ] for qw(uwsgi scgi grpc);

for my $path (sort keys %case) {
    my ($status, $error, $cause, $errno, $peer, $hint, $err) = @{ $case{$path} };
    my $mark = $t->error_log_mark;
    my $r = get($path);
    my $j = $r->{json};
    is($r->{status}, $status, "$path: $status");
    is($r->{headers}{'content-type'}, 'application/json', "$path: the JSON fallback");
    is($r->{headers}{'content-length'}, length $r->{body}, "$path: Content-Length");
    is($j->{status}, $status, "$path: body status");
    is($j->{error}, $error, "$path: body error");
    is($j->{cause}, $cause, "$path: body cause $cause");
    is($r->{log}{triage_cause}, $cause, "$path: \$triage_cause in the access log agrees");
    is($j->{errno}, $errno, "$path: details: errno " . ($errno // 'null'));
    is($j->{peer}, $peer, "$path: details: peer");
    like($j->{hint} // '', $hint, "$path: details: hint");
    is($r->{log}{triage_hint}, $j->{hint}, "$path: \$triage_hint is the same hint");
    is($j->{request_id}, $r->{log}{request_id}, "$path: the request id of the access log");
    ok($t->wait_error_log($err, since => $mark), "$path: error.log has nginx's own line")
        or diag($t->error_log_since($mark));
}

# without details: the cause, nothing of the backend
for my $path ('/quiet/denied', '/quiet/full') {
    my $r = get($path);
    is($r->{status}, 502, "$path: 502");
    ok($r->{json}{cause}, "$path: the cause ($r->{json}{cause})");
    unlike($r->{body}, qr{unix:|\Q$sockdir\E|\.sock}, "$path: no socket path in the body");
    ok(!exists $r->{json}{$_}, "$path: no $_") for qw(peer errno phase hint);
}

# html: a browser's page, with the socket only in the details
{
    my $r = get('/html/denied');
    is($r->{status}, 502, '/html/denied: 502');
    is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', '/html/denied: HTML');
    like($r->{body}, qr/temporarily unavailable/i, '/html/denied: the friendly page');
    like($r->{body}, qr/\Q$r->{log}{request_id}\E/, '/html/denied: with the request id');
    like($r->{body}, qr/permission_denied/, '/html/denied: details: the cause');
}

# nginx logs a failed connect() to a unix socket at crit: those lines are the faults made
# here, anything else is not
my @bad = grep { !/\[crit\] .*connect\(\) to unix:\Q$sockdir\E\/\w+\.sock failed/ } crash_lines($t);
is(scalar @bad, 0, 'no alert, crit (but the unix connect() failures) or crashed worker') or diag(join "\n", @bad);

done_testing();
