#!/usr/bin/env perl
# Exact-count HTTP/1.1 client for bench/overhead's callgrind runs.
#
#   client.pl PORT COUNT [CONNECT_TIMEOUT_S] [READ_TIMEOUT_S] [STATUS]
#
# Sends COUNT "GET /" requests to 127.0.0.1:PORT one after the other on a single keep-alive
# connection, checks each answer is a STATUS (default 200) with a Content-Length body, then
# closes.
# A refused connect is retried (nginx never sees it), so waiting for a slow start under
# valgrind adds no request. Exits non-zero, with a message, on any deviation.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);

my ($port, $count, $connect_timeout, $read_timeout, $status) = @ARGV;
die "usage: client.pl PORT COUNT [CONNECT_TIMEOUT_S] [READ_TIMEOUT_S] [STATUS]\n"
    unless defined $count && $port =~ /^\d+$/ && $count =~ /^\d+$/;
$connect_timeout //= 120;
$read_timeout    //= 60;
$status          //= 200;

my $sock;
my $deadline = time + $connect_timeout;
while (1) {
    $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
    last if $sock;
    die "client: cannot connect to 127.0.0.1:$port within ${connect_timeout}s: $!\n"
        if time > $deadline;
    sleep 0.2;
}
$sock->autoflush(1);
binmode $sock;
my $sel = IO::Select->new($sock);
my $buf = '';

sub fill {
    my ($what) = @_;
    die "client: timeout (${read_timeout}s) waiting for $what\n" unless $sel->can_read($read_timeout);
    my $n = sysread($sock, $buf, 65536, length $buf);
    die "client: read error waiting for $what: $!\n" unless defined $n;
    die "client: connection closed by server waiting for $what\n" if $n == 0;
}

my $req = "GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench-client\r\n\r\n";
for my $i (1 .. $count) {
    defined(syswrite($sock, $req)) or die "client: write error at request $i: $!\n";
    my $end;
    fill("headers of request $i") until ($end = index($buf, "\r\n\r\n")) >= 0;
    my $head = substr($buf, 0, $end + 4, '');
    $head =~ m{^HTTP/1\.1 (\d{3}) } or die "client: bad status line at request $i\n";
    $1 == $status or die "client: request $i: status $1\n";
    $head =~ /^Content-Length:\s*(\d+)\r$/mi or die "client: request $i: no Content-Length\n";
    my $len = $1;
    $head !~ /^Connection:\s*close/mi or die "client: request $i: server closes the connection\n";
    fill("body of request $i") while length $buf < $len;
    substr($buf, 0, $len, '');
    length $buf == 0 or die "client: request $i: unexpected extra bytes\n";
}
close $sock;
print "$count\n";
