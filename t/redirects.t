#!/usr/bin/perl
# What a request records survives what nginx does around the upstream: an internal
# redirect (error_page ... = @fallback), a second upstream after it, a mirror subrequest
# whose upstream runs at the same time on the same connection, and names that fail to
# resolve synchronously (no resolver defined; nginx does not cache NXDOMAIN, so an answer
# from a DNS server always comes asynchronously: t/causes_proxy.t), and a name with two
# addresses whose first lookup nginx answers asynchronously, building the peers and trying
# them all before any of our hooks runs.   Run alone: prove -v t/redirects.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use Triage::Harness qw(log_format_directive wait_until);
use Triage::Backend;

my @F = qw(request_uri status triage_cause triage_causes triage_errno triage_peer upstream_addr
           triage_hint);
my $t = Triage::Harness->new;
my %b = map { $_ => $t->backend($_) } qw(ok silent);
my $closed  = Triage::Backend::closed_port();
my $closed2 = Triage::Backend::closed_port();
# two.test: two loopback addresses where nothing listens on the closed port
my @two = map { "127.0.0.$_:$closed2" } 2, 3;
$b{dns} = $t->backend('dns', answers => { 'two.test' => ['127.0.0.2', '127.0.0.3'] });

$t->start(<<'CONF', LOG_FORMAT => log_format_directive('triage', @F),
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 64; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log triage;
    proxy_next_upstream off;
    proxy_connect_timeout 2s;

    server {
        listen 127.0.0.1:%%PORT_main%%;

        # the fallback answers itself: the record survives the internal redirect
        location /fb_return { error_page 502 = @explain; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location @explain {
            return 503 "cause=$triage_cause errno=$triage_errno causes=$triage_causes\n";
        }

        # the fallback proxies to a healthy backend: the response was not a failure
        location /fb_proxy { error_page 502 = @healthy; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location @healthy  { proxy_pass http://%%OK%%; }

        # the main request's upstream ends first, the mirror's (silent) one a second later
        location /mirrored { mirror /m; proxy_pass http://%%OK%%; }
        location = /m      { internal; proxy_read_timeout 1s; proxy_pass http://%%SILENT%%; }

        # a name that fails before any address is tried, inside the content handler
        location /noresolver { proxy_pass http://$arg_h:%%CLOSED2%%; }

        # a name with two addresses, resolved at run time: every try is seen
        location /two {
            resolver 127.0.0.1:%%DNS%% valid=60s ipv6=off;
            proxy_next_upstream error;
            set $two two.test;
            proxy_pass http://$two:%%CLOSED2%%;
        }

        location = /status { triage_status; access_log off; }
    }
}
CONF
    CLOSED => $closed, CLOSED2 => $closed2, OK => $b{ok}->addr, SILENT => $b{silent}->addr,
    DNS => $b{dns}->port);

sub access { $t->find_access('access.log', \@F, request_uri => $_[0]) }

sub status_json {
    my $r = $t->http('main', '/status');
    return eval { JSON::PP::decode_json($r->{body}) } || {};
}

# error_page 502 = @explain: the named location reads the variables.
{
    my $r = $t->http('main', '/fb_return');
    is($r->{status}, 503, '/fb_return: the fallback answers');
    is($r->{body}, "cause=connect_refused errno=111 causes=connect_refused\n",
       '/fb_return: the fallback sees the cause of the 502');
    my $rec = access('/fb_return');
    is($rec && $rec->{triage_cause}, 'connect_refused', '/fb_return: access log $triage_cause');
    ok($t->wait_error_log(qr/connect\(\) failed \(111: Connection refused\).*"GET \/fb_return /),
       '/fb_return: error.log proves the refused connect');
}

# error_page 502 = @healthy: the second upstream answers, so nothing decided a failure,
# but the failed try is still listed.
{
    my $r = $t->http('main', '/fb_proxy');
    is($r->{status}, 200, '/fb_proxy: the healthy fallback answers 200');
    my $rec = access('/fb_proxy');
    is($rec && $rec->{triage_cause}, '', '/fb_proxy: $triage_cause empty (the response succeeded)');
    is($rec && $rec->{triage_causes}, 'connect_refused', '/fb_proxy: $triage_causes lists the failed try');
    like($rec && $rec->{upstream_addr}, qr/^127\.0\.0\.1:$closed : \Q${\ $b{ok}->addr }\E$/,
         '/fb_proxy: nginx tried the refused port, then the healthy backend');
}

# A mirror subrequest shares the connection (and its log) with the main request; the main
# request's upstream finishes first. The mirror's timeout is still seen with its errno, and
# the next request on the same connection still gets its own errno (the log is left clean).
{
    my $c = $t->conn('main') or BAIL_OUT("connect: $!");
    $c->send_request(GET => '/mirrored');
    my $r = $c->read_response(timeout => 5);
    is($r->{status}, 200, '/mirrored: the main request answers 200');
    my $rec = access('/mirrored');
    is($rec && $rec->{triage_cause}, '', '/mirrored: main request $triage_cause empty');
    my $peer = wait_until(sub {
        my $u = status_json()->{upstreams}{ $b{silent}->addr } or return;
        my ($p) = @{ $u->{peers} || [] };
        $p && $p->{last_failure} ? $p : undef;
    }, 5);
    is($peer && $peer->{last_failure}{cause}, 'read_timeout', 'mirror: its read timeout is counted');
    is($peer && $peer->{last_failure}{errno}, 110, 'mirror: with the errno nginx logged');
    ok($t->wait_error_log(qr/upstream timed out \(110: Connection timed out\).*subrequest: "\/m"/),
       'mirror: error.log has the timeout line');

    $c->send_request(GET => '/fb_return?again');
    $r = $c->read_response(timeout => 5);
    is($r->{body}, "cause=connect_refused errno=111 causes=connect_refused\n",
       'same connection, next request: its own cause and errno');
    ok($t->wait_error_log(qr/connect\(\) failed \(111: Connection refused\).*"GET \/fb_return\?again /),
       'same connection, next request: its error.log line is written');
    $c->close;
}

# No resolver: nginx gives up inside the content handler, before any peer.
{
    my $r = $t->http('main', '/noresolver?h=nothere.invalid');
    is($r->{status}, 502, '/noresolver: 502');
    my $rec = access('/noresolver?h=nothere.invalid');
    is($rec && $rec->{triage_cause}, 'host_not_found', '/noresolver: $triage_cause host_not_found');
    is($rec && $rec->{triage_peer}, '', '/noresolver: no peer was tried');
    ok($t->wait_error_log(qr/no resolver defined to resolve nothere\.invalid/),
       '/noresolver: error.log says no resolver is defined');
    like($rec && $rec->{triage_hint}, qr/^the host name comes from a variable .*no resolver directive is in effect: add one \(resolver 127\.0\.0\.11 in Docker/,
         '/noresolver: $triage_hint says to add a resolver');
    # recorded once (by the log tap, before nginx's 502), not again after the handler
    my $r2 = $t->http('main', '/noresolver?h=nothere.invalid');
    my $u = wait_until(sub {
        my $u = status_json()->{upstreams}{"nothere.invalid:$closed2"} or return;
        ($u->{failures}{total} // 0) >= 2 ? $u : undef;
    }, 5);
    is($u && $u->{failures}{total}, 2, '/noresolver: status: two requests, two failures')
        or diag explain status_json()->{upstreams};
    is($u && $u->{failures}{by_cause}{host_not_found}, 2, '/noresolver: status: both host_not_found');
}

# A name with two addresses, both refused. The first request waits for the DNS answer: nginx
# builds the peers in the resolver's handler and connects at once, so the first try fails
# before anything of ours sees the peers (only the log tap set at the content handler runs).
# The second request finds the answer in nginx's cache and builds the peers synchronously.
# Each time both tries are counted, on their own peers.
{
    my %seen;
    for my $n (1, 2) {
        my $uri = "/two?n=$n";
        my $r = $t->http('main', $uri);
        is($r->{status}, 502, "$uri: 502 once both addresses refused");
        my $rec = access($uri) || {};
        is($rec->{triage_causes}, 'connect_refused,connect_refused',
           "$uri: \$triage_causes lists both tries");
        my @addr = split /, /, $rec->{upstream_addr} // '';
        is_deeply([ sort @addr ], \@two, "$uri: nginx tried both addresses") or diag explain \@addr;
        is($rec->{triage_peer}, $addr[-1] // 'none', "$uri: \$triage_peer is the last one tried");
        $seen{$_}++ for @addr;
        my $q = () = $b{dns}->queries;
        if ($n == 1) {
            ok($q >= 1, "$uri: nginx asked the DNS server (an asynchronous answer)");
            $seen{queries} = $q;
        } else {
            is($q, $seen{queries}, "$uri: nginx answered from its cache (no new query)");
        }
        my $u = wait_until(sub {
            my $u = status_json()->{upstreams}{"two.test:$closed2"} or return;
            my %f = map { $_->{name} => $_->{failures}{by_cause}{connect_refused} // 0 }
                @{ $u->{peers} || [] };
            (grep { ($f{$_} // 0) == $seen{$_} } @two) == 2 ? \%f : undef;
        }, 5);
        ok($u, "$uri: status: each address has its refused tries counted")
            or diag explain status_json()->{upstreams}{"two.test:$closed2"};
    }
    my $refused = qr/connect\(\) failed \(111: Connection refused\) while connecting to upstream.*"GET \/two\?n=/;
    ok(wait_until(sub { (() = $t->error_log_since(0) =~ /$refused/g) == 4 }, 5),
       'error.log: four refused connects for the two requests');
}

$t->stop;
done_testing;
