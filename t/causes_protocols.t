#!/usr/bin/perl
# fastcgi_pass, uwsgi_pass, scgi_pass, grpc_pass x {refused, read timeout,
# premature close}: the module classifies them like proxy_pass. And fastcgi_pass / grpc_pass
# to an HTTP server (the wrong port), which answers 400 and closes: invalid_header, not the
# close that followed.
# (grpc_pass works for an HTTP/1.1 client too; nginx speaks h2c to the peer.)
# Run alone: prove -v t/causes_protocols.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(log_format_directive);
use Triage::Backend;

my @F = qw(request_uri status triage_cause triage_causes triage_errno triage_phase
           triage_peer upstream_addr triage_hint);

my $t = Triage::Harness->new;
# 'raw': these protocols are binary; a request is a burst of bytes then 100 ms of silence
my $silent = $t->backend('silent', protocol => 'raw');
my $close  = $t->backend('close',  protocol => 'raw');
my $http   = $t->backend('plain',  protocol => 'raw');
my $closed = Triage::Backend::closed_port();

my %pass = (fastcgi => 'fastcgi_pass %s', uwsgi => 'uwsgi_pass %s',
            scgi => 'scgi_pass %s', grpc => 'grpc_pass grpc://%s');
my %peer = (refused => "127.0.0.1:$closed", silent => $silent->addr, close => $close->addr);

# the wrong protocol: an HTTP server behind fastcgi_pass and grpc_pass
my %wrong = (
    '/fastcgi/http' => { pass => "fastcgi_pass " . $http->addr, hint => qr/not valid FastCGI: check that fastcgi_pass/,
                         err => qr/\[error\] .*upstream sent unsupported FastCGI protocol version: 72 while reading response header from upstream/ },
    '/grpc/http'    => { pass => "grpc_pass grpc://" . $http->addr, hint => qr/not valid HTTP\/2 \(gRPC\): check that grpc_pass/,
                         err => qr/\[error\] .*upstream sent too large http2 frame: \d+ while reading response header from upstream/ },
);
my $locations = join '', map { "        location $_ { $wrong{$_}{pass}; }\n" } sort keys %wrong;
my $timeouts  = '';
for my $p (sort keys %pass) {
    $timeouts .= "    ${p}_connect_timeout 1s;\n    ${p}_read_timeout 1s;\n";
    for my $k (sort keys %peer) {
        $locations .= "        location /$p/$k { " . sprintf($pass{$p}, $peer{$k}) . "; }\n";
    }
}

$t->start(<<'CONF', LOG_FORMAT => log_format_directive('triage', @F), TIMEOUTS => $timeouts, LOCATIONS => $locations);
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log triage;
%%TIMEOUTS%%
    server {
        listen 127.0.0.1:%%PORT_main%%;
%%LOCATIONS%%
    }
}
CONF

my %expect = (
    refused => { status => 502, cause => 'connect_refused', errno => 111, phase => 'connect',
                 err => qr/\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream/ },
    silent  => { status => 504, cause => 'read_timeout', phase => 'read_header',
                 err => qr/\[error\] .*upstream timed out \(110: Connection timed out\) while reading response header from upstream/ },
    close   => { status => 502, cause => 'premature_close', errno => '', phase => 'read_header',
                 err => qr/\[error\] .*upstream prematurely closed connection while reading response header from upstream/ },
);

# all requests at once: the read timeouts overlap
my @uris = ((map { my $p = $_; map { "/$p/$_" } sort keys %peer } sort keys %pass), sort keys %wrong);
for my $u (keys %wrong) {
    $expect{$u} = { status => 502, cause => 'invalid_header', errno => '', phase => 'read_header',
                    %{ $wrong{$u} } };
    $peer{$u} = $http->addr;
}
# what each uri expects, and the peer it tries
sub expect_of { my ($u) = @_; my ($k) = $u =~ m{/(\w+)$}; $expect{$u} // $expect{$k} }
sub peer_of   { my ($u) = @_; my ($k) = $u =~ m{/(\w+)$}; $peer{$u} // $peer{$k} }
my %conn;
for my $u (@uris) {
    $conn{$u} = $t->conn('main') or BAIL_OUT("connect to nginx: $!");
    $conn{$u}->send_request(GET => $u);
}
for my $u (@uris) {
    my $e = expect_of($u);
    my $r = $conn{$u}->read_response(timeout => 10);
    is($r->{status}, $e->{status}, "$u: status $e->{status}") or diag($r->{error});
    $conn{$u}->close;
}
for my $u (@uris) {
    my $e = expect_of($u);
    my $rec = $t->find_access('access.log', \@F, request_uri => $u);
    ok($rec, "$u: access log line") or next;
    is($rec->{triage_cause}, $e->{cause}, "$u: \$triage_cause");
    is($rec->{triage_causes}, $e->{cause}, "$u: \$triage_causes");
    is($rec->{triage_errno}, $e->{errno}, "$u: \$triage_errno") if defined $e->{errno};
    is($rec->{triage_phase}, $e->{phase}, "$u: \$triage_phase");
    is($rec->{triage_peer}, peer_of($u), "$u: \$triage_peer");
    if ($e->{hint}) {
        like($rec->{triage_hint}, $e->{hint}, "$u: \$triage_hint");
    } else {
        isnt($rec->{triage_hint}, '', "$u: \$triage_hint set");
    }
    ok($t->wait_error_log(qr/$e->{err}.*request: "GET \Q$u\E HTTP\/1\.1"/),
       "$u: error.log proves the fault");
}

done_testing;
