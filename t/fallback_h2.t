#!/usr/bin/perl
# triage_fallback over HTTP/2, with curl (nghttp2) as the client: over TLS (ALPN h2, what
# browsers speak) and cleartext with prior knowledge. The fallback sends its header and body
# from the header filter and then stops nginx's own page (r->header_only); HTTP/2 frames the
# header and the body itself, so each is checked here: status, Content-Type, Content-Length
# equal to the body's size, Cache-Control, Retry-After, the body (its request id the one in
# the access log), HEAD without a body, several requests on one connection, Accept
# negotiation, the backend's own 502 (upstream_errors=on), and no worker crash.
#   Run alone: prove -v t/fallback_h2.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use Triage::Harness qw(log_format_directive self_signed_cert);
use Triage::Backend;
use Triage::Checks qw(crash_lines);

my $t = Triage::Harness->new;
my $closed = Triage::Backend::closed_port();
my $closed2 = Triage::Backend::closed_port();
my $own502 = $t->backend('bad_gateway');
my $dir = $t->subdir('tls');

system("curl --version 2>/dev/null | grep -q HTTP2") == 0
    or BAIL_OUT('curl without HTTP/2 support (nghttp2)');
self_signed_cert($dir, 'localhost');

my @F = qw(request_uri status triage_cause request_id connection server_protocol);
$t->start(<<'CONF', CLOSED => $closed, CLOSED2 => $closed2, OWN502 => $own502->addr, DIR => $dir, LOG_FORMAT => log_format_directive('h2', @F));
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log h2;
    proxy_next_upstream off;

    # two refused peers: the first request fails on both, which takes them out; the next
    # finds no live upstream (one upstream per protocol below)
    upstream dead_tls {
        server 127.0.0.1:%%CLOSED%% max_fails=1 fail_timeout=30s;
        server 127.0.0.1:%%CLOSED2%% max_fails=1 fail_timeout=20s;
    }
    upstream dead_clear {
        server 127.0.0.1:%%CLOSED%% max_fails=1 fail_timeout=30s;
        server 127.0.0.1:%%CLOSED2%% max_fails=1 fail_timeout=20s;
    }

    server {
        listen 127.0.0.1:%%PORT_tls%% ssl;
        listen 127.0.0.1:%%PORT_clear%%;
        http2 on;
        ssl_certificate %%DIR%%/localhost.crt;
        ssl_certificate_key %%DIR%%/localhost.key;

        triage_fallback json;
        location /refused  { proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /dead_tls   { proxy_next_upstream error; proxy_pass http://dead_tls; }
        location /dead_clear { proxy_next_upstream error; proxy_pass http://dead_clear; }
        location /auto     { triage_fallback auto; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /own502   { triage_fallback json upstream_errors=on; proxy_pass http://%%OWN502%%; }
    }
}
CONF

my $seq = 0;
# A curl exit code that is expected (besides 0) for the run at hand.
our $CURL_RC_OK = 0;

# curl(\@args, @urls) -> list of {code, version, headers => {lc name => value}, body}, one per
# URL, in one curl run (it reuses its connection where it can).
sub curl {
    my ($args, @urls) = @_;
    my @out;
    my @cmd = ('curl', '-sS', '--max-time', '10');
    for my $u (@urls) {
        my $n = $seq++;
        # --next: options per URL; curl keeps its connections across it
        push @cmd, '--next' if @out;
        push @cmd, @$args, '-D', "$dir/h.$n", '-o', "$dir/b.$n", $u;
        push @out, $n;
    }
    my ($rc, $log) = Triage::Harness::_run(\@cmd, 20);
    diag("curl exited $rc: $log") if $rc != 0 && $rc != $CURL_RC_OK;
    return map {
        my $n = $_;
        my $head = slurp("$dir/h.$n");
        my ($version, $code) = $head =~ m{^HTTP/(\S+) (\d{3})}m;
        my %h;
        for (split /\r?\n/, $head) { $h{ lc $1 } = $2 if /^([\w-]+):\s*(.*?)\s*$/ }
        { version => $version // '', code => $code // 0, headers => \%h, body => slurp("$dir/b.$n") }
    } @out;
}

sub slurp {
    my ($p) = @_;
    open my $fh, '<', $p or return '';
    local $/;
    my $c = <$fh>;
    return $c // '';
}

my $tls = 'https://localhost:' . $t->port('tls');
my $clear = 'http://127.0.0.1:' . $t->port('clear');
my @TLS = ('--http2', '-k', '--resolve', 'localhost:' . $t->port('tls') . ':127.0.0.1');
my @CLEAR = ('--http2-prior-knowledge');

my $lines_seen = 0;
sub access_lines {
    my ($n) = @_;
    my $l = $t->wait_access_log('access.log', $lines_seen + $n, fields => \@F);
    my @new = @$l[$lines_seen .. $#$l];
    $lines_seen = @$l;
    return @new;
}

sub json_checks {
    my ($r, $what, $cause, $log) = @_;
    is($r->{version}, '2', "$what: HTTP/2");
    is($r->{code}, 502, "$what: 502");
    is($r->{headers}{'content-type'}, 'application/json', "$what: Content-Type");
    is($r->{headers}{'cache-control'}, 'no-store', "$what: Cache-Control: no-store");
    is($r->{headers}{'content-length'}, length $r->{body}, "$what: Content-Length is the body's size");
    my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
    is($j->{cause}, $cause, "$what: the body names the cause");
    is($j->{error}, 'bad_gateway', "$what: error");
    ok($log && $j->{request_id} && $j->{request_id} eq $log->{request_id},
        "$what: the body's request id is the access log's") or diag($r->{body});
    is($log && $log->{server_protocol}, 'HTTP/2.0', "$what: logged as HTTP/2.0");
}

# curl 7.88 (Debian 12) fails a second request on a reused prior-knowledge connection
# ("Error in the HTTP2 framing layer", also for a plain `return 200`): in cleartext, one
# request per connection.
for my $case ([ 'TLS (ALPN h2)', \@TLS, $tls, 1, 'tls' ],
    [ 'cleartext (prior knowledge)', \@CLEAR, $clear, 0, 'clear' ]) {
    my ($name, $args, $base, $reuse, $tag) = @$case;
    my $get = sub { $reuse ? curl($args, @_) : map { curl($args, $_) } @_ };

    # GET, then (TLS) a second and third request on the same connection
    my @r = $get->("$base/refused/1", "$base/refused/2", "$base/refused/3");
    my @log = access_lines(3);
    json_checks($r[$_], "$name: GET /refused/" . ($_ + 1), 'connect_refused', $log[$_]) for 0 .. 2;
    if ($reuse) {
        my %c = map { $_->{connection} => 1 } @log;
        is(scalar keys %c, 1,
            "$name: three requests on one connection (\$connection " . join(',', map { $_->{connection} } @log) . ')');
    }

    # HEAD: the header alone, with the length the body would have (-X HEAD: curl reads
    # whatever body comes, where -I would not). curl then says the body is missing (exit 18,
    # "transfer closed with 130 bytes remaining"): what a HEAD answer must look like.
    my ($h) = do { local $CURL_RC_OK = 18; curl([ @$args, '-X', 'HEAD' ], "$base/refused/head") };
    access_lines(1);
    is($h->{code}, 502, "$name: HEAD: 502");
    is($h->{body}, '', "$name: HEAD: no body");
    is($h->{headers}{'content-length'}, length $r[0]{body}, "$name: HEAD: Content-Length of the page");
    is($h->{headers}{'content-type'}, 'application/json', "$name: HEAD: Content-Type");

    # no live upstreams: Retry-After
    my @d = $get->("$base/dead_$tag/1", "$base/dead_$tag/2");
    my @dl = access_lines(2);
    json_checks($d[0], "$name: first try of a dead upstream", 'connect_refused', $dl[0]);
    json_checks($d[1], "$name: no live upstreams", 'no_live_upstreams', $dl[1]);
    like($d[1]{headers}{'retry-after'} // '', qr/^([1-9]|[12]\d|30)$/, "$name: no live upstreams: Retry-After (fail_timeout left)");

    # auto: HTML for a browser, JSON for an API client
    my ($html) = curl([ @$args, '-H', 'Accept: text/html,application/xhtml+xml,*/*;q=0.8' ], "$base/auto/b");
    my ($api) = curl([ @$args, '-H', 'Accept: application/json' ], "$base/auto/a");
    access_lines(2);
    is($html->{headers}{'content-type'}, 'text/html; charset=utf-8', "$name: auto, a browser: HTML");
    like($html->{body}, qr/<html/i, "$name: auto: an HTML page");
    is($html->{headers}{'content-length'}, length $html->{body}, "$name: auto, HTML: Content-Length");
    is($html->{headers}{vary}, 'Accept', "$name: auto: Vary: Accept");
    is($api->{headers}{'content-type'}, 'application/json', "$name: auto, an API client: JSON");

    # the backend's own 502, replaced as it comes (the body filter path)
    my ($o) = curl($args, "$base/own502/x");
    my ($ol) = access_lines(1);
    is($o->{code}, 502, "$name: backend's own 502 with upstream_errors=on: 502");
    my $j = eval { JSON::PP::decode_json($o->{body}) } || {};
    is($j->{cause}, 'upstream_502', "$name: backend's own 502: replaced by the JSON page");
    is($o->{headers}{'content-length'}, length $o->{body}, "$name: backend's own 502: Content-Length");
    unlike($o->{body}, qr/backend's own 502/, "$name: backend's own body dropped");
}

my @bad = crash_lines($t);
is(scalar @bad, 0, 'no alert, crit or crashed worker in error.log') or diag(join "\n", @bad);

done_testing();
