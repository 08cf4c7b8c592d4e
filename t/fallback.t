#!/usr/bin/perl
# triage_fallback: nginx-generated 502/504 answered with a prepared JSON, HTML or static file
# body, for real faults on loopback (refused, timed out, no live upstreams), while the
# backend's own 502, a body cut mid-stream, error_page and proxy_intercept_errors keep their
# behaviour. Also HEAD, keep-alive, Accept negotiation, details, inheritance, reload and
# nginx -t errors.   Run alone: prove -v t/fallback.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use Triage::Harness qw(log_format_directive);
use Triage::Backend;

my @F = qw(request_uri status triage_cause request_id connection connection_requests
           upstream_cache_status);
my $t = Triage::Harness->new;
my %b = (
    silent => $t->backend('silent'),
    own502 => $t->backend('bad_gateway'),
    cut    => $t->backend('cut_body'),
    cut502 => $t->backend('cut_body', status => 502),
    # cacheable for one second (then stopped: the cache serves its copy stale)
    cached => $t->backend('custom', then => 'close',
        respond => "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nCache-Control: max-age=1\r\n\r\ncached\n"),
);
my $closed  = Triage::Backend::closed_port();
my $closed2 = Triage::Backend::closed_port();
my $OWN_BODY = "backend's own 502\n";

my $conf_dir = $t->prefix . '/conf';
my $err_dir  = $t->subdir('errpages');
sub write_file { my ($p, $c) = @_; open my $fh, '>', $p or die "$p: $!"; print $fh $c; close $fh }
my $FILE_BODY = qq({"status": "maintenance", "message": "back soon"}\n);
write_file("$conf_dir/fallback.json", $FILE_BODY);
write_file("$conf_dir/sorry.html", "<p>sorry</p>\n");
write_file("$conf_dir/notes.txt", "notes\n");
write_file("$conf_dir/fallback_noext", "raw\n");
write_file("$err_dir/err502.html", "the user's own error page\n");

# One block of locations per mode; nested locations inherit the mode.
my %MODE = (json => 'json', html => 'html', auto => 'auto', file => 'file=fallback.json');
my ($silent, $own502, $cut) = map { $b{$_}->addr } qw(silent own502 cut);
my ($upstreams, $locations) = ('', '');
for my $m (sort keys %MODE) {
    $upstreams .= <<"U";
    upstream dead_$m {
        server 127.0.0.1:$closed max_fails=1 fail_timeout=30s;
        server 127.0.0.1:$closed2 max_fails=1 fail_timeout=20s;
    }
U
    $locations .= <<"L";
        location /$m/ {
            triage_fallback $MODE{$m};
            location /$m/refused   { proxy_pass http://127.0.0.1:$closed; }
            location /$m/timeout   { proxy_pass http://$silent; }
            location /$m/dead      { proxy_next_upstream error; proxy_pass http://dead_$m; }
            location /$m/own502    { proxy_pass http://$own502; }
            location /$m/cut       { proxy_pass http://$cut; }
            location /$m/own502_on {
                triage_fallback $MODE{$m} upstream_errors=on;
                proxy_pass http://$own502;
            }
        }
L
}

my $CONF = <<'CONF';
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log triage;
    types { application/json json; text/html html; text/plain txt; }
    default_type application/octet-stream;
    proxy_connect_timeout 2s;
    proxy_read_timeout 1s;
    proxy_next_upstream off;
    proxy_cache_path %%PREFIX%%/cache keys_zone=stale:1m;

    triage_fallback json;

%%UPSTREAMS%%
    server {
        listen 127.0.0.1:%%PORT_main%%;

%%LOCATIONS%%
        # inherited from http{}
        location /inherit_http { proxy_pass http://127.0.0.1:%%CLOSED%%; }
        # no upstream failure: nginx's page stays
        location /plain502     { return 502; }

        location /details/json { triage_fallback_details on; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        # a host name in a variable and no resolver: nginx's 502 comes inside the handler
        location /details/noresolver { triage_fallback_details on; proxy_pass http://$arg_h:%%CLOSED%%; }
        location /details/html {
            triage_fallback html;
            triage_fallback_details on;
            proxy_pass http://127.0.0.1:%%CLOSED%%;
        }

        location /types/html   { triage_fallback file=sorry.html; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /types/typed  {
            triage_fallback file=fallback.json type=application/problem+json;
            proxy_pass http://127.0.0.1:%%CLOSED%%;
        }
        location /types/text   { triage_fallback file=notes.txt type=text/plain; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /types/noext  { triage_fallback file=fallback_noext; proxy_pass http://127.0.0.1:%%CLOSED%%; }

        # a user's error_page for the status wins; for another status it does not interfere
        location /ep/uri       { error_page 502 /errpages/err502.html; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /ep/named     { error_page 502 = @named; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location @named        { return 502 "named location page\n"; }
        location /ep/other     { error_page 504 /errpages/err502.html; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /errpages/    { root %%PREFIX%%; }

        # proxy_intercept_errors: with error_page the user's page wins, even with
        # upstream_errors=on; without error_page nothing is intercepted
        location /ic/errpage   {
            proxy_intercept_errors on;
            error_page 502 /errpages/err502.html;
            triage_fallback json upstream_errors=on;
            proxy_pass http://%%OWN502%%;
        }
        location /ic/plain     { proxy_intercept_errors on; proxy_pass http://%%OWN502%%; }
        location /ic/on        {
            proxy_intercept_errors on;
            triage_fallback json upstream_errors=on;
            proxy_pass http://%%OWN502%%;
        }
        # the backend is gone and the cache answers with its stale copy: a 200, not replaced
        location /stale {
            proxy_cache stale;
            proxy_cache_key $uri;  # one copy for /stale?N: each request its own log line
            proxy_cache_use_stale error timeout;
            proxy_pass http://%%CACHED%%;
        }
        # the backend's own 502 cut mid-body, replaced from its header on
        location /cut502_on    { triage_fallback json upstream_errors=on; proxy_pass http://%%CUT502%%; }
    }

    server {
        listen 127.0.0.1:%%PORT_second%%;
        triage_fallback html;
        triage_fallback_status 503;
        triage_fallback_retry_after 7;

        location /inherit      { proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /off          { triage_fallback off; proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /json504      { triage_fallback json; proxy_pass http://%%SILENT%%; }
        location /outer/       {
            triage_fallback_details on;
            location /outer/inner { proxy_pass http://127.0.0.1:%%CLOSED%%; }
        }
    }
}
CONF

my %VARS = (LOG_FORMAT => log_format_directive('triage', @F),
    UPSTREAMS => $upstreams, LOCATIONS => $locations, CLOSED => $closed,
    SILENT => $b{silent}->addr, OWN502 => $b{own502}->addr, CUT => $b{cut}->addr,
    CUT502 => $b{cut502}->addr, CACHED => $b{cached}->addr);
$t->start($CONF, %VARS);

sub access { $t->find_access('access.log', \@F, request_uri => $_[0]) }

# check_fallback($name, $response, uri => ..., mode => json|html|file, status => 502,
#     error => 'bad_gateway', cause => ..., retry => [lo, hi] or undef, details => 0|1,
#     file => body, type => content type)
sub check_fallback {
    my ($name, $r, %e) = @_;
    my $status = $e{status} // 502;
    is($r->{status}, $status, "$name: status $status") or diag($r->{error} // $r->{body});
    is($r->{headers}{'cache-control'}, 'no-store', "$name: Cache-Control: no-store");
    is($r->{headers}{'content-length'}, length $r->{body}, "$name: Content-Length is the body's");
    my $rec = access($e{uri});
    is($rec && $rec->{status}, $status, "$name: access log \$status is the one sent");
    is($rec && $rec->{triage_cause}, $e{cause}, "$name: access log \$triage_cause $e{cause}");
    my $rid = $rec ? $rec->{request_id} : 'none';
    my $retry = $r->{headers}{'retry-after'};
    if ($e{retry}) {
        my ($lo, $hi) = @{ $e{retry} };
        ok(defined $retry && $retry >= $lo && $retry <= $hi,
           "$name: Retry-After in $lo..$hi") or diag('Retry-After: ' . ($retry // 'none'));
    } else {
        ok(!defined $retry, "$name: no Retry-After");
    }
    unless ($e{details}) {
        unlike($r->{body}, qr/127\.0\.0\.1|:$closed\b/, "$name: no internal address in the body");
    }
    if ($e{mode} eq 'json') {
        is($r->{headers}{'content-type'}, 'application/json', "$name: Content-Type");
        my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
        is($j->{status}, $status, "$name: JSON status");
        is($j->{error}, $e{error} // 'bad_gateway', "$name: JSON error");
        is($j->{cause}, $e{cause}, "$name: JSON cause");
        is($j->{request_id}, $rid, "$name: JSON request_id is \$request_id");
        is($j->{retry_after}, $retry, "$name: JSON retry_after matches Retry-After");
        my @keys = qw(cause error request_id retry_after status);
        push @keys, qw(errno hint peer phase) if $e{details};
        is_deeply([ sort keys %$j ], [ sort @keys ], "$name: JSON keys");
        return $j;
    }
    if ($e{mode} eq 'html') {
        is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', "$name: Content-Type");
        like($r->{body}, qr/<title>Service temporarily unavailable<\/title>/, "$name: the page");
        like($r->{body}, qr{<code>\Q$rid\E</code>}, "$name: the page quotes \$request_id");
        if (defined $retry) {
            like($r->{body}, qr/try again in $retry seconds/, "$name: the page says when to retry");
        }
        return;
    }
    is($r->{body}, $e{file}, "$name: the file's body");
    is($r->{headers}{'content-type'}, $e{type}, "$name: Content-Type $e{type}");
    return;
}

sub untouched_own502 {
    my ($name, $r) = @_;
    is($r->{status}, 502, "$name: the backend's 502");
    is($r->{body}, $OWN_BODY, "$name: the backend's own body");
    is($r->{headers}{'content-type'}, 'text/plain', "$name: the backend's Content-Type");
    ok(!defined $r->{headers}{'cache-control'}, "$name: no Cache-Control added");
}

my %expect = (
    json => { mode => 'json' },
    html => { mode => 'html' },
    auto => { mode => 'html' },    # no Accept: HTML
    file => { mode => 'file', file => $FILE_BODY, type => 'application/json' },
);

# The timeouts first, all at once (1 s each).
my %slow;
for my $m (sort keys %MODE) {
    my $c = $t->conn('main') or BAIL_OUT("connect: $!");
    $c->send_request(GET => "/$m/timeout", headers => [Connection => 'close']);
    $slow{$m} = $c;
}
{
    my $c = $t->conn('second') or BAIL_OUT("connect: $!");
    $c->send_request(GET => '/json504', headers => [Connection => 'close']);
    $slow{json504} = $c;
}

for my $m (sort keys %MODE) {
    my %x = %{ $expect{$m} };

    check_fallback("$m refused", $t->http('main', "/$m/refused"),
        %x, uri => "/$m/refused", cause => 'connect_refused');

    my $r = $slow{$m}->read_response(timeout => 10);
    check_fallback("$m timeout", $r, %x, uri => "/$m/timeout", status => 504,
        error => 'gateway_timeout', cause => 'read_timeout');

    # both peers refuse (and are marked failed), then no live upstreams: Retry-After is the
    # smaller fail_timeout (20 s; 21 while the second in which they failed lasts)
    check_fallback("$m dead, first", $t->http('main', "/$m/dead?1"),
        %x, uri => "/$m/dead?1", cause => 'connect_refused');
    check_fallback("$m no live upstreams", $t->http('main', "/$m/dead?2"),
        %x, uri => "/$m/dead?2", cause => 'no_live_upstreams', retry => [19, 21]);

    untouched_own502("$m backend's own 502", $t->http('main', "/$m/own502"));
    # the backend's body is dropped as it comes: nothing of it, nor a second page, follows on
    # the connection
    {
        my $c = $t->conn('main') or BAIL_OUT("connect: $!");
        my @r = map { $c->request(GET => "/$m/own502_on?$_") } 1 .. 2;
        $c->close;
        check_fallback("$m own 502, upstream_errors=on, request $_", $r[$_ - 1],
            %x, uri => "/$m/own502_on?$_", cause => 'upstream_502') for 1 .. 2;
        unlike($r[$_]{body}, qr/backend's own/, "$m own 502, upstream_errors=on: no backend bytes")
            for 0 .. 1;
    }

    $r = $t->http('main', "/$m/cut");
    is($r->{status}, 200, "$m body cut: the 200 that went out");
    is($r->{body}, 'x' x 100, "$m body cut: the bytes the backend sent, nothing else");
    like($r->{error} // '', qr/eof/, "$m body cut: the connection is closed early");
    my $rec = access("/$m/cut");
    is($rec && $rec->{triage_cause}, 'premature_close', "$m body cut: classified, not replaced");

    # HEAD, then GET twice, on one connection: HEAD gets the headers only, keep-alive holds
    my $c = $t->conn('main') or BAIL_OUT("connect: $!");
    my $h = $c->request(HEAD => "/$m/refused?head");
    my $g = $c->request(GET => "/$m/refused?ka1");
    my $g2 = $c->request(GET => "/$m/refused?ka2");
    $c->close;
    is($h->{status}, 502, "$m HEAD: 502");
    is($h->{headers}{'content-length'}, length $g->{body},
       "$m HEAD: Content-Length of the body a GET gets");
    is($h->{headers}{'cache-control'}, 'no-store', "$m HEAD: Cache-Control");
    is($h->{headers}{connection}, 'keep-alive', "$m HEAD: keep-alive");
    check_fallback("$m keep-alive 1", $g, %x, uri => "/$m/refused?ka1", cause => 'connect_refused');
    check_fallback("$m keep-alive 2", $g2, %x, uri => "/$m/refused?ka2", cause => 'connect_refused');
    my @recs = map { access("/$m/refused?$_") } qw(head ka1 ka2);
    is(join(',', map { $_ ? $_->{connection_requests} : '-' } @recs), '1,2,3',
       "$m keep-alive: three requests on one connection");
    is(scalar(grep { $_ && $_->{connection} eq $recs[0]{connection} } @recs), 3,
       "$m keep-alive: the same connection");
}

# auto: Accept decides, with q-values; the answer varies with Accept
my $n = 0;
for my $case (
    [ 'application/json' => 'json' ],
    [ 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' => 'html' ],
    [ 'application/json, text/plain, */*' => 'json' ],
    [ 'application/json;q=0.5, text/html' => 'html' ],
    [ 'text/html;q=0, application/json;q=0.1' => 'json' ],
    [ '*/*' => 'html' ],
) {
    my ($accept, $mode) = @$case;
    my $uri = '/auto/refused?accept=' . $n++;
    my $r = $t->http('main', $uri, headers => { Accept => $accept });
    check_fallback("auto, Accept: $accept", $r, mode => $mode, uri => $uri,
        cause => 'connect_refused');
    is($r->{headers}{vary}, 'Accept', "auto, Accept: $accept: Vary: Accept");
}

# details: peer, errno, phase, hint
{
    my $j = check_fallback('details json', $t->http('main', '/details/json'),
        mode => 'json', uri => '/details/json', cause => 'connect_refused', details => 1);
    is($j->{peer}, "127.0.0.1:$closed", 'details json: peer');
    is($j->{errno}, 111, 'details json: errno');
    is($j->{phase}, 'connect', 'details json: phase');
    like($j->{hint}, qr/nothing listens at that address/, 'details json: hint');

    my $r = $t->http('main', '/details/html');
    check_fallback('details html', $r, mode => 'html', uri => '/details/html',
        cause => 'connect_refused', details => 1);
    like($r->{body}, qr{<dd>127\.0\.0\.1:$closed</dd>}, 'details html: peer');
    like($r->{body}, qr{<dd>connect_refused</dd>.*<dd>111</dd>.*<dd>connect</dd>}s,
         'details html: cause, errno, phase');
}

# a host name in a variable with no resolver: nginx finalizes with 502 inside the content
# handler, before any try; the fallback answers it like any other
{
    my $uri = '/details/noresolver?h=nothere.invalid';
    my $j = check_fallback('no resolver', $t->http('main', $uri), mode => 'json', uri => $uri,
        cause => 'host_not_found', details => 1);
    is($j->{peer}, undef, 'no resolver: no peer was tried');
    is($j->{phase}, 'resolve', 'no resolver: phase resolve');
    like($j->{hint}, qr/no resolver directive is in effect/, 'no resolver: the hint says to add one');
}

# file=: Content-Type from type= or nginx's types, charset for text types
check_fallback('file .html', $t->http('main', '/types/html'), mode => 'file', uri => '/types/html',
    cause => 'connect_refused', file => "<p>sorry</p>\n", type => 'text/html; charset=utf-8');
check_fallback('file type=', $t->http('main', '/types/typed'), mode => 'file', uri => '/types/typed',
    cause => 'connect_refused', file => $FILE_BODY, type => 'application/problem+json');
check_fallback('file type=text/plain', $t->http('main', '/types/text'), mode => 'file',
    uri => '/types/text', cause => 'connect_refused', file => "notes\n",
    type => 'text/plain; charset=utf-8');
check_fallback('file without extension', $t->http('main', '/types/noext'), mode => 'file',
    uri => '/types/noext', cause => 'connect_refused', file => "raw\n",
    type => 'application/octet-stream');

# error_page and proxy_intercept_errors
{
    my $r = $t->http('main', '/ep/uri');
    is($r->{status}, 502, 'error_page URI: 502');
    is($r->{body}, "the user's own error page\n", "error_page URI: the user's page wins");
    ok(!defined $r->{headers}{'cache-control'}, 'error_page URI: no fallback header');

    $r = $t->http('main', '/ep/named');
    is($r->{status}, 502, 'error_page @named: 502');
    is($r->{body}, "named location page\n", "error_page \@named: the user's page wins");

    check_fallback('error_page for another status', $t->http('main', '/ep/other'),
        mode => 'json', uri => '/ep/other', cause => 'connect_refused');

    $r = $t->http('main', '/ic/errpage');
    is($r->{status}, 502, 'intercept + error_page: 502');
    is($r->{body}, "the user's own error page\n",
       "intercept + error_page: the user's page wins over upstream_errors=on");
    my $rec = access('/ic/errpage');
    is($rec && $rec->{triage_cause}, 'upstream_502', 'intercept + error_page: classified upstream_502');

    untouched_own502('intercept without error_page', $t->http('main', '/ic/plain'));
    check_fallback('intercept + upstream_errors=on', $t->http('main', '/ic/on'),
        mode => 'json', uri => '/ic/on', cause => 'upstream_502');

    $r = $t->http('main', '/cut502_on');
    check_fallback("backend's 502 cut mid-body, upstream_errors=on", $r, mode => 'json',
        uri => '/cut502_on', cause => 'upstream_502');
    unlike($r->{body}, qr/x/, "backend's 502 cut mid-body: none of its bytes");
}

# nginx's own pages stay when no upstream failure decided, or where the fallback is off
{
    my $r = $t->http('main', '/plain502');
    is($r->{status}, 502, 'return 502: 502');
    like($r->{body}, qr{<center><h1>502 Bad Gateway</h1></center>}, "return 502: nginx's page");
    ok(!defined $r->{headers}{'cache-control'}, 'return 502: untouched');
}

# proxy_cache_use_stale: the refused backend is hidden by the cache's stale copy. The answer is
# the cache's 200, not replaced; $triage_cause says why it is stale.
{
    my $r = $t->http('main', '/stale?fill');
    is("$r->{status} $r->{body}", "200 cached\n", 'stale: the backend fills the cache');
    $b{cached}->stop;
    my ($n, $rec) = (0, undef);
    # fresh for a second (HIT: the backend is not asked), STALE once the copy has expired
    Triage::Harness::wait_until(sub {
        $r = $t->http('main', '/stale?' . ++$n);
        $rec = access("/stale?$n");
        $rec && $rec->{upstream_cache_status} eq 'STALE';
    }, 5);
    is($rec && $rec->{upstream_cache_status}, 'STALE', 'stale: the cache answered with its expired copy');
    is("$r->{status} $r->{body}", "200 cached\n", 'stale: 200 with the cached body, no fallback');
    is($r->{headers}{'cache-control'}, 'max-age=1',
       "stale: the backend's own Cache-Control, not the fallback's no-store");
    is($rec && $rec->{triage_cause}, 'connect_refused', 'stale: $triage_cause says why it is stale');
}

# inheritance: http{} json; server html, status 503, Retry-After 7; location off / json;
# nested location with details
check_fallback('inherited from http', $t->http('main', '/inherit_http'),
    mode => 'json', uri => '/inherit_http', cause => 'connect_refused');
check_fallback('inherited from server', $t->http('second', '/inherit'),
    mode => 'html', uri => '/inherit', status => 503, cause => 'connect_refused', retry => [7, 7]);
{
    my $r = $t->http('second', '/off');
    is($r->{status}, 502, 'location off: 502, not the fallback status');
    like($r->{body}, qr{<center><h1>502 Bad Gateway</h1></center>}, "location off: nginx's page");
    ok(!defined $r->{headers}{'retry-after'}, 'location off: no Retry-After');
}
check_fallback('json in an html server', $slow{json504}->read_response(timeout => 10),
    mode => 'json', uri => '/json504', status => 503, error => 'gateway_timeout',
    cause => 'read_timeout', retry => [7, 7]);
{
    my $r = $t->http('second', '/outer/inner');
    check_fallback('nested location', $r, mode => 'html', uri => '/outer/inner', status => 503,
        cause => 'connect_refused', retry => [7, 7], details => 1);
    like($r->{body}, qr{<dd>127\.0\.0\.1:$closed</dd>}, 'nested location: details inherited');
}

# reload reads the file again; a reload whose file is gone fails and the old body stays
{
    my $new = qq({"status": "maintenance", "message": "reloaded"}\n);
    write_file("$conf_dir/fallback.json", $new);
    $t->reload($CONF, %VARS);
    my $r = $t->http('main', '/file/refused?reloaded');
    is($r->{body}, $new, 'reload: the new file content is served');

    unlink "$conf_dir/fallback.json";
    my $mark = $t->error_log_mark;
    ok(!eval { $t->reload; 1 }, 'reload without the file: rejected');
    like($t->error_log_since($mark),
         qr/\[emerg\].*cannot read fallback file "\Q$conf_dir\E\/fallback\.json": No such file/,
         'reload without the file: [emerg] names the file');
    $r = $t->http('main', '/file/refused?after_failed_reload');
    is($r->{body}, $new, 'reload without the file: the running body stays');
}

$t->stop;

# nginx -t: bad arguments and unreadable files fail with file and line
{
    my $c = Triage::Harness->new(name => 'fallback_conf');
    my $file = $c->conf_file;
    my $cdir = $c->prefix . '/conf';
    my $tmpl = <<'CONF';
%%LOAD_MODULE%%
events { worker_connections 64; }
http {
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / {
            %%LOCATION%%
            return 204;
        }
    }
}
CONF
    my @bad = (
        [ 'missing file', 'triage_fallback file=missing.json;', qr/missing\.json/,
          qr/cannot read fallback file "\Q$cdir\E\/missing\.json": No such file or directory/ ],
        [ 'a directory', 'triage_fallback file=/;', qr/file=\//,
          qr/cannot read fallback file "\/": Is a directory/ ],
        [ 'unknown mode', 'triage_fallback xml;', qr/triage_fallback xml/,
          qr/invalid value "xml", it must be "off", "json", "html", "auto" or "file=PATH"/ ],
        [ 'type= without file=', 'triage_fallback json type=text/plain;', qr/type=text/,
          qr/invalid parameter "type=text\/plain": "type=" goes with "file=PATH" only/ ],
        [ 'bad upstream_errors', 'triage_fallback json upstream_errors=yes;', qr/upstream_errors=yes/,
          qr/invalid parameter "upstream_errors=yes", it must be "upstream_errors=on" or "upstream_errors=off"/ ],
        [ 'duplicate', "triage_fallback json;\n            triage_fallback html;", qr/fallback html/,
          qr/"triage_fallback" directive is duplicate/ ],
        [ 'status 204', 'triage_fallback_status 204;', qr/status 204/,
          qr/invalid status "204"/ ],
        [ 'status text', 'triage_fallback_status soon;', qr/status soon/, qr/invalid status "soon"/ ],
        [ 'retry_after text', 'triage_fallback_retry_after soon;', qr/retry_after soon/,
          qr/"triage_fallback_retry_after" directive invalid value/ ],
        [ 'details value', 'triage_fallback_details maybe;', qr/details maybe/,
          qr/invalid value "maybe" in "triage_fallback_details" directive/ ],
    );
    for my $case (@bad) {
        my ($name, $dir, $marker, $msg) = @$case;
        my ($rc, $out) = $c->test_config($tmpl, LOCATION => $dir);
        my $line = $c->line_of($marker);
        isnt($rc, 0, "nginx -t, $name: fails");
        like($out, qr/nginx: \[emerg\] (?:$msg)[^\n]* in \Q$file\E:$line$/m,
             "nginx -t, $name: [emerg] names $file:$line") or diag($out);
    }
    write_file("$cdir/ok.json", "{}\n");
    my ($rc, $out) = $c->test_config($tmpl, LOCATION => 'triage_fallback file=ok.json type=application/json '
        . "upstream_errors=on;\n            triage_fallback_status 503;\n"
        . "            triage_fallback_retry_after 1m;\n            triage_fallback_details on;");
    is($rc, 0, 'nginx -t: every directive, good values') or diag($out);
}

done_testing;
