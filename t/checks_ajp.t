#!/usr/bin/perl
# type=ajp checks (nginx_upstream_check_module's): the check sends AJP 1.3's CPing and
# passes on a CPong, as Tomcat's AJP connector answers. The container here is a socket that
# answers the 5 bytes of a CPing with the 5 of a CPong (no Java on the test machines).
# Servers that are not AJP (an HTTP server, an AJP packet that is not a CPong, a CPong cut
# short, silence, a close, a reset, a closed port) get the right reason, and crash nothing.
#   Run alone: prove -v t/checks_ajp.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness;
use Triage::Backend;
use Triage::Checks qw(settled no_crash start_checked expect_verdicts);

my $t = Triage::Harness->new;
my $CPONG = "AB\x00\x01\x09";
my $closed = Triage::Backend::closed_port();
my $sock = $t->subdir('sock') . '/ajp.sock';
my %h = (
    ajp       => $t->backend('custom', protocol => 'raw', respond => $CPONG, then => 'keep'),
    ajp_unix  => $t->backend('custom', protocol => 'raw', respond => $CPONG, then => 'keep',
                     unix => $sock),
    # an HTTP server on the AJP port: "400 Bad Request" to bytes it cannot parse
    http      => $t->backend('plain'),
    # an AJP packet from the container, but an END_RESPONSE, not a CPong
    not_cpong => $t->backend('custom', protocol => 'raw', respond => "AB\x00\x02\x05\x01"),
    cut       => $t->backend('custom', protocol => 'raw', respond => substr($CPONG, 0, 3)),
    silent    => $t->backend('silent', protocol => 'raw'),
    close     => $t->backend('close', protocol => 'raw'),
    reset     => $t->backend('reset', protocol => 'raw'),
);
# name => [peer, expected state, last_error]
my %ups = (
    ajp       => [$h{ajp}->addr, 'up'],
    ajp_unix  => ["unix:$sock", 'up'],
    http      => [$h{http}->addr, 'unhealthy', 'invalid_header'],
    not_cpong => [$h{not_cpong}->addr, 'unhealthy', 'invalid_header'],
    cut       => [$h{cut}->addr, 'unhealthy', 'premature_close'],
    silent    => [$h{silent}->addr, 'unhealthy', 'read_timeout'],
    close     => [$h{close}->addr, 'unhealthy', 'premature_close'],
    reset     => [$h{reset}->addr, 'unhealthy', 'connection_reset'],
    closed    => ["127.0.0.1:$closed", 'unhealthy', 'connect_refused'],
);

my $check = 'check interval=200 rise=1 fall=1 timeout=500 type=ajp;';
my @workers = start_checked($t, $check, \%ups);

expect_verdicts($t, 'ajp', \%ups);
# what the container received: CPings, 5 bytes each, nothing else
{
    my @got = $h{ajp}->requests;
    ok(@got > 0, 'the container received checks');
    is_deeply([grep { $_ ne 'raw 5' } @got], [], 'each check sent 5 bytes (a CPing)')
        or diag(explain(\@got));
}
ok($h{http}->count > 0 && $h{reset}->connections > 0, 'the other servers were really contacted');
like($t->http('main', '/cs?format=json')->{body}, qr/"type":\s*"ajp"/, 'check_status json: type ajp');

# the container goes away: connect_refused
$h{ajp}->stop;
{
    my $p = settled($t, 'ajp', $h{ajp}->addr, 'unhealthy', 'connect_refused');
    is($p && $p->{health}{last_error}, 'connect_refused', 'container stopped: ajp is unhealthy, connect_refused');
}

no_crash($t, \@workers);
$t->stop;
done_testing;
