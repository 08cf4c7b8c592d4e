#!/usr/bin/perl
# The recent failures ring when it goes round (`triage_zone ... recent=4`), written by two
# workers without a lock: it keeps the newest failures, newest first, each entry whole (the
# path and the $request_id of one and the same request, as the access log has them), and
# the counters count every failure even when the ring leaves one out. A reload that asks for
# another recent= keeps the zone and its list, and says so.
#   Run alone: prove -v t/status_recent.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(status_json peer crash_lines);

my $t = Triage::Harness->new;
my $closed = Triage::Backend::closed_port();

my $conf = <<'CONF';
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 128; }
http {
    triage_zone 1m recent=4;
    log_format ids '$request_uri|$status|$request_id|$pid';
    access_log logs/access.log ids;

    upstream app { server 127.0.0.1:%%CLOSED%%; }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
        location = /__upstream_status { triage_status; access_log off; }
    }
}
CONF
$t->start($conf, CLOSED => $closed);

sub status { status_json($t, '/__upstream_status') }

sub failures_total {
    my ($j) = @_;
    my $p = peer($j, 'app', "127.0.0.1:$closed");
    return $p ? $p->{failures}{total} : -1;
}

# --- 1. sequential: 11 failures, each on a new connection (either worker takes it) -------
my $n = 11;
for my $i (1 .. $n) {
    is($t->http('main', "/seq/$i")->{status}, 502, "/seq/$i: 502") or last;
}
my $lines = $t->wait_access_log('access.log', $n, fields => [qw(uri status request_id pid)]);
is(scalar @$lines, $n, "$n requests logged");
my %id_of = map { $_->{uri} => $_->{request_id} } @$lines;
my %pids = map { $_->{pid} => 1 } @$lines;
note('workers that answered: ' . join(' ', sort keys %pids));

my $j = wait_until(sub { my $j = status(); failures_total($j) >= $n ? $j : undef }, 5) || status();
is(failures_total($j), $n, 'the peer counts every failure');
my $rf = $j->{recent_failures} || [];
is(scalar @$rf, 4, 'recent=4: the ring holds the last 4 failures');
is_deeply([ map { $_->{path} } @$rf ], [ map { "/seq/$_" } reverse $n - 3 .. $n ],
    'newest first, the oldest overwritten');
is_deeply([ map { $_->{request_id} } @$rf ], [ map { $id_of{"/seq/$_"} } reverse $n - 3 .. $n ],
    'each entry has its own request id, as the access log has it');
is_deeply([ map { "$_->{cause}/$_->{errno}/$_->{status}" } @$rf ], [ ('connect_refused/111/502') x 4 ],
    'cause, errno and status of each entry');

# --- 2. concurrent: 8 keep-alive connections with a request in flight on each, 15 rounds ---
my $conns = 8;
my $rounds = 15;
my @c = map { $t->conn('main') or BAIL_OUT("connect: $!") } 1 .. $conns;
my $answered = 0;
for my $round (1 .. $rounds) {
    for my $k (0 .. $#c) {
        $c[$k]->send_request(GET => "/par/$k/$round");
    }
    for my $k (0 .. $#c) {
        my $r = $c[$k]->read_response(timeout => 5);
        $answered++ if $r->{status} == 502;
    }
}
$_->close for @c;
my $total = $n + $conns * $rounds;
is($answered, $conns * $rounds, 'every concurrent request answered 502');
$lines = $t->wait_access_log('access.log', $total, fields => [qw(uri status request_id pid)]);
is(scalar @$lines, $total, "$total requests logged");
%id_of = map { $_->{uri} => $_->{request_id} } @$lines;

$j = wait_until(sub { my $j = status(); failures_total($j) >= $total ? $j : undef }, 5) || status();
is(failures_total($j), $total, 'the peer counts every failure, also those the ring left out');
$rf = $j->{recent_failures} || [];
ok(@$rf >= 1 && @$rf <= 4, 'the ring shows 1 to 4 entries') or diag(scalar @$rf);
my @whole = grep {
    $_->{path} =~ m{^/par/\d+/\d+$} && defined $id_of{ $_->{path} }
        && $id_of{ $_->{path} } eq $_->{request_id}
} @$rf;
is(scalar @whole, scalar @$rf, 'every entry is whole: the path and request id of one request')
    or diag(JSON::PP->new->canonical->encode($rf));
my @last_round = grep { m{^/par/\d+/$rounds$} } map { $_->{path} } @$rf;
is(scalar @last_round, scalar @$rf, 'the entries are from the last round')
    or diag(join ' ', map { $_->{path} } @$rf);
my @times = map { $_->{time} } @$rf;
is_deeply(\@times, [ sort { $b cmp $a } @times ], 'newest first');

# --- 3. a reload asks for recent=8: the zone is kept (same size), and so is its list of 4;
#     a warning says so, and when the new size would apply
my $mark = $t->error_log_mark;
(my $conf8 = $conf) =~ s/recent=4/recent=8/ or die 'recent=4 not in the configuration';
$t->reload($conf8, CLOSED => $closed);
like($t->error_log_since($mark),
    qr/\[warn\] .*triage: zone "triage" is kept across the reload, with its recent failures list of 4 entries: recent=8 applies when the zone is made anew \(a restart, or a change of triage_zone's size\)/,
    'reload with recent=8: a warning that the list keeps its 4 entries');
is($t->http('main', "/after/$_")->{status}, 502, "/after/$_: 502") for 1 .. 6;
$j = wait_until(sub { my $j = status(); failures_total($j) >= $total + 6 ? $j : undef }, 5) || status();
is(scalar @{ $j->{recent_failures} || [] }, 4, 'the ring still holds 4');
$mark = $t->error_log_mark;
$t->reload($conf, CLOSED => $closed);
unlike($t->error_log_since($mark), qr/recent failures list/,
    'a reload back to recent=4, what the zone has: no warning');

my @crash = crash_lines($t);
is(scalar @crash, 0, 'no alert, crit or crashed worker') or diag(join "\n", @crash);

done_testing();
