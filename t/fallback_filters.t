#!/usr/bin/perl
# triage_fallback among the filters operators have on anyway: the page goes through nginx's
# header and body filters like any response. `gzip` leaves it alone, as it leaves every 502
# (it compresses 200, 403 and 404 only); `ssi on` reads the HTML page and sends it chunked
# (the length dropped), whole, with the connection kept; `add_header ... always` adds its
# headers (plain `add_header` does not, as for any 502); `charset` adds no second charset;
# `expires` on a page sent as 200 (triage_fallback_status 200) leaves its no-store.
# And our own body filter: with `upstream_errors=on`, a backend's 502 with a 2 MB body
# (buffered and unbuffered) is dropped as it comes, and the page goes out once; a backend's
# 502 that `proxy_cache` stored is replaced on a cache hit as on the miss.
#   Run alone: prove -v t/fallback_filters.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use Triage::Harness;
use Triage::Backend;
use Triage::Checks qw(crash_lines);

my $t = Triage::Harness->new;
my $closed = Triage::Backend::closed_port();
my $big_body = 'x' x (2 * 1024 * 1024);
my $big = $t->backend('custom', then => 'close', respond =>
    "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: "
    . length($big_body) . "\r\n\r\n$big_body");

my $own = $t->backend('bad_gateway');
my $cache = $t->subdir('cache');

$t->start(<<'CONF', CLOSED => $closed, BIG => $big->addr, OWN => $own->addr, CACHE => $cache);
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    gzip on;
    gzip_types application/json;
    gzip_min_length 20;
    charset utf-8;
    proxy_cache_path %%CACHE%% keys_zone=c1:1m;

    server {
        listen 127.0.0.1:%%PORT_main%%;
        triage_fallback json;
        add_header X-Frame-Options DENY always;
        add_header X-Only-Success yes;

        location /json { proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /html { triage_fallback html; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /as200 {
            triage_fallback_status 200;
            expires 1h;
            proxy_pass http://127.0.0.1:%%CLOSED%%;
        }
        location /ssi  { triage_fallback html; ssi on; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /big/buffered {
            triage_fallback json upstream_errors=on;
            proxy_pass http://%%BIG%%;
        }
        location /cached {
            triage_fallback json upstream_errors=on;
            proxy_cache c1;
            proxy_cache_valid any 1m;
            add_header X-Cache $upstream_cache_status always;
            proxy_pass http://%%OWN%%;
        }
        location /big/unbuffered {
            triage_fallback json upstream_errors=on;
            proxy_buffering off;
            proxy_pass http://%%BIG%%;
        }
    }
}
CONF

# gzip: a 502 is not compressed (nginx's rule), and the page keeps its length
{
    my $r = $t->http('main', '/json/1', headers => { 'Accept-Encoding' => 'gzip' });
    is($r->{status}, 502, 'gzip on, Accept-Encoding: gzip: 502');
    is($r->{headers}{'content-encoding'}, undef, 'gzip: a 502 is not compressed, as nginx does for every 502');
    is($r->{headers}{'content-length'}, length $r->{body}, 'gzip: Content-Length is the body\'s');
    like($r->{body}, qr/"cause":"connect_refused"/, 'gzip: the JSON page');
}

# ssi: the page goes through the SSI filter, which drops the length: chunked, whole, and the
# connection carries on
{
    my $c = $t->conn('main');
    my $r = $c->request(GET => '/ssi/1');
    is($r->{status}, 502, 'ssi on: 502');
    is($r->{headers}{'transfer-encoding'}, 'chunked', 'ssi on: chunked (the SSI filter drops the length)');
    is($r->{headers}{'content-length'}, undef, 'ssi on: no Content-Length');
    like($r->{body}, qr/temporarily unavailable.*<\/html>\s*\z/is, 'ssi on: the whole HTML page');
    my $r2 = $c->request(GET => '/json/2');
    is($r2->{status}, 502, 'the next request on the connection answers');
    is($r2->{headers}{'content-length'}, length $r2->{body}, 'the next request: its own page, with its length');
    like($r2->{body}, qr/^\{"status":502/, 'the next request: nothing of the previous response left over');
    $c->close;
}

# add_header: `always` applies to the page, plain add_header (2xx/3xx only) does not
{
    my $r = $t->http('main', '/json/3');
    is($r->{headers}{'x-frame-options'}, 'DENY', 'add_header ... always: on the fallback page');
    is($r->{headers}{'x-only-success'}, undef, 'add_header without always: not on a 502');
}

# expires acts on 2xx and 3xx: on a page sent as 200 it adds its own Cache-Control and
# Expires, and the page's no-store stays (a cache must not keep an outage page for an hour)
{
    my $r = $t->http('main', '/as200/1');
    is($r->{status}, 200, 'triage_fallback_status 200: 200');
    my @cc = map { $_->[1] } grep { lc $_->[0] eq 'cache-control' } @{ $r->{header_list} || [] };
    ok((grep { $_ eq 'no-store' } @cc), 'expires 1h: the page keeps Cache-Control: no-store')
        or diag explain \@cc;
}

# charset: the HTML page already says utf-8; nginx's charset filter adds nothing
{
    my $r = $t->http('main', '/html/1');
    is($r->{status}, 502, 'html: 502');
    is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', 'html: one charset');
    like($r->{body}, qr/temporarily unavailable/i, 'html: the page');
    my $j = $t->http('main', '/json/4');
    is($j->{headers}{'content-type'}, 'application/json', 'json: charset does not touch application/json');
}

# the backend's own 502 with a 2 MB body: dropped, the page sent once, the connection kept
for my $p ('/big/buffered', '/big/unbuffered') {
    my $c = $t->conn('main');
    for my $n (1, 2) {
        my $r = $c->request(GET => "$p?$n", timeout => 10);
        is($r->{status}, 502, "$p ($n on the connection): 502");
        is($r->{headers}{'content-length'}, length $r->{body}, "$p ($n): Content-Length of the page");
        like($r->{body}, qr/^\{"status":502,"error":"bad_gateway","cause":"upstream_502"/,
            "$p ($n): the page, nothing of the backend's 2 MB");
    }
    $c->close;
}

# proxy_cache stored the backend's 502: the miss and the hits get the page, on one connection
{
    my $c = $t->conn('main');
    for my $n (1 .. 3) {
        my $r = $c->request(GET => '/cached');
        is($r->{headers}{'x-cache'}, $n == 1 ? 'MISS' : 'HIT', "/cached $n: " . ($n == 1 ? 'MISS' : 'HIT'));
        like($r->{body}, qr/^\{"status":502,"error":"bad_gateway","cause":"upstream_502"/,
            "/cached $n: the page, not the stored 502");
        is($r->{headers}{'content-length'}, length $r->{body}, "/cached $n: Content-Length of the page");
    }
    $c->close;
}

my @bad = crash_lines($t);
is(scalar @bad, 0, 'no alert, crit or crashed worker') or diag(join "\n", @bad);

done_testing();
