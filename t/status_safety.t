#!/usr/bin/perl
# The status location is protected by nginx's own access rules, and names that carry quotes,
# angle brackets, backslashes and newlines — from the configuration, or put into a run-time
# upstream name by a client — come out escaped in JSON, Prometheus and HTML (rendered by
# headless Chromium: text on the page, never markup).   Run alone: prove -v t/status_safety.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Triage::Harness;
use Triage::Backend;
use Triage::Status qw(need_tools validate_json promtool_check chromium);

need_tools(qw(jsonschema promtool chromium));

my $t = Triage::Harness->new;
my $dns = $t->backend('dns_nxdomain');
my ($c1, $c2, $c3) = map { Triage::Backend::closed_port() } 1 .. 3;

# The configured name, as nginx reads it: evil"<b>&'\x<newline><img src=x onerror=...>
my $EVIL = qq{evil"<b>&'\\x\n<img src=x onerror=document.title='pwned'>};
# A client-chosen host name (raw in $arg_h: nginx does not decode it) for a run-time upstream
my $HOST = q{"<i>h'};
my $DYN = "$HOST:$c3";

$t->start(<<'CONF', C1 => $c1, C2 => $c2, C3 => $c3, DNS => $dns->port);
%%LOAD_MODULE%%
events { worker_connections 64; }
http {
    access_log off;
    upstream "evil\"<b>&'\\x\n<img src=x onerror=document.title='pwned'>" {
        server 127.0.0.1:%%C1%%;
        server 127.0.0.1:%%C2%% down;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /evil { proxy_pass "http://evil\"<b>&'\\x\n<img src=x onerror=document.title='pwned'>"; }
        location /dyn {
            resolver 127.0.0.1:%%DNS%% ipv6=off;
            resolver_timeout 2s;
            proxy_pass http://$arg_h:%%C3%%;
        }
        location = /status {
            triage_status;
            allow 127.0.0.1;
            deny all;
        }
        location = /open { triage_status; }
    }
}
CONF

# --- allow 127.0.0.1; deny all;
{
    my $r = $t->http('main', '/status', local_addr => '127.0.0.2');
    is($r->{status}, 403, 'a client at 127.0.0.2 gets 403');
    unlike($r->{body}, qr/upstreams|nginx_triage/, '403: no status data');
    for my $f (qw(json prometheus html)) {
        is($t->http('main', "/status?format=$f", local_addr => '127.0.0.2')->{status}, 403,
           "?format=$f from 127.0.0.2: 403");
    }
    $r = $t->http('main', '/status', local_addr => '127.0.0.1');
    is($r->{status}, 200, 'a client at 127.0.0.1 gets the status');
    is($t->http('main', '/open', local_addr => '127.0.0.2')->{status}, 200,
       'without allow/deny, 127.0.0.2 gets it: the 403 above is the rule\'s');
}

# --- failures under both names
is($t->http('main', '/evil')->{status}, 502, '/evil: 502 (refused)');
is($t->http('main', qq{/dyn?h=$HOST})->{status}, 502, '/dyn?h=' . $HOST . ': 502 (NXDOMAIN)');

# --- JSON: the exact names after decoding, valid against the schema
my $r = $t->http('main', '/status?format=json');
my $j = eval { decode_json($r->{body}) } || {};
my $u = $j->{upstreams}{$EVIL};
ok($u, 'json: the configured name round-trips exactly') or diag($r->{body});
is($u && $u->{failures}{by_cause}{connect_refused}, 1, 'json: its failure is counted');
my $d = $j->{upstreams}{$DYN};
ok($d && $d->{dynamic}, 'json: the client-chosen run-time name round-trips exactly')
    or diag(join ', ', keys %{ $j->{upstreams} });
is($d && $d->{failures}{by_cause}{host_not_found}, 1, 'json: its host_not_found is counted');
unlike($r->{body}, qr/\n/, 'json: the newline in a name is escaped');
like($r->{body}, qr/"evil\\"<b>&'\\\\x\\n<img/, 'json: quote, backslash, newline escaped');
my ($valid, $out) = validate_json($t, $r->{body});
ok($valid, 'json: valid against the schema') or diag($out);
$r = $t->http('main', '/status?upstream=' . uri_escape($EVIL));
is($r->{status}, 200, 'json: ?upstream= finds the name, percent-encoded');
is_deeply([ keys %{ (eval { decode_json($r->{body}) } || {})->{upstreams} || {} } ], [$EVIL],
    'json: ?upstream= selects it');

# --- Prometheus: label values escaped per the format, promtool clean
$r = $t->http('main', '/status?format=prometheus');
my $esc = q{evil\\"<b>&'\\\\x\\n<img src=x onerror=document.title='pwned'>};
like($r->{body}, qr/^nginx_triage_peer_up\{upstream="\Q$esc\E",peer="127\.0\.0\.1:$c1"\} 0$/m,
     'prometheus: the configured name escaped (\\\\, \\", \\n)');
like($r->{body},
     qr/^nginx_triage_upstream_failures_total\{upstream="\\"<i>h'\Q:$c3\E",peer="",cause="host_not_found"\} 1$/m,
     'prometheus: the run-time name escaped, its failure before any peer has peer=""');
my @lines = split /\n/, $r->{body};
is(scalar(grep { !/^(# (HELP|TYPE) nginx_triage_\w+ |nginx_triage_\w+(\{.*\})? \S+$)/ } @lines), 0,
   'prometheus: every line is a comment or a whole sample (no name broke a line)');
my ($clean, $pout) = promtool_check($t, $r->{body});
ok($clean, 'prometheus: promtool check metrics is clean') or diag($pout);

# --- HTML: rendered by Chromium, the names are text, nothing was injected
my $dom = chromium($t, 'http://127.0.0.1:' . $t->port('main') . '/status?format=html',
                   budget => 3000);
like($dom, qr/data-updated="\d{4}-/, 'html: the page rendered the fetched JSON');
unlike($dom, qr/<img|<b>&amp;|<i>/i, 'html: no element made of a name');
like($dom, qr/<title>nginx-triage status<\/title>/, 'html: onerror did not run (title unchanged)');
like($dom, qr/<h2>evil"&lt;b&gt;&amp;'\\x\n&lt;img src=x onerror=document.title='pwned'&gt;/,
     'html: the configured name is the heading\'s text');
like($dom, qr/<h2>"&lt;i&gt;h'\Q:$c3\E/, 'html: the client-chosen name is text too');
$r = $t->http('main', '/status?format=html');
unlike($r->{body}, qr/evil|&lt;i&gt;|<i>h/, 'html: the server puts no name in the page');

sub uri_escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

$t->stop;
done_testing;
