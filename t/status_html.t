#!/usr/bin/perl
# The HTML dashboard in real headless Chromium against a live nginx: the page fetches the
# JSON of its own location and draws a table per upstream (peer states coloured by class,
# failures by cause, last failure, hint) and the recent failures; ?state= and ?upstream= are
# passed on to the JSON; ?refresh=N makes it fetch again every N s. A screenshot is kept as
# an artifact: t/artifacts/status_html.png (and in the test's dir under t/tmp/ with
# TRIAGE_KEEP=1).   Run alone: prove -v t/status_html.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use File::Copy qw(copy);
use File::Path qw(make_path);
use JSON::PP;
use Test::More;
use Triage::Harness;
use Triage::Backend;
use Triage::Status qw(need_tools chromium ARTIFACTS);

need_tools('chromium');

my $t = Triage::Harness->new;
my $ok = $t->backend('ok');
my ($c1, $c2, $c3, $c4, $c5) = map { Triage::Backend::closed_port() } 1 .. 5;

$t->start(<<'CONF', OK => $ok->addr, C1 => $c1, C2 => $c2, C3 => $c3, C4 => $c4, C5 => $c5);
%%LOAD_MODULE%%
events { worker_connections 64; }
http {
    log_format st '$request_uri|$status';
    access_log logs/access.log st;
    proxy_next_upstream off;
    upstream app {
        server %%OK%% weight=3;
        server 127.0.0.1:%%C1%% max_fails=1 fail_timeout=60s;
        server 127.0.0.1:%%C2%% down;
        server 127.0.0.1:%%C3%% backup;
        keepalive 4;
    }
    upstream dead {
        server 127.0.0.1:%%C4%% max_fails=1 fail_timeout=60s;
        server 127.0.0.1:%%C5%% max_fails=1 fail_timeout=60s;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /app  { proxy_pass http://app; }
        location /dead { proxy_pass http://dead; proxy_next_upstream error; }
        location = /status { triage_status html; }
        location = /broken {
            triage_status html;
            if ($arg_format = json) { return 503 '{"error": "maintenance"}'; }
        }
    }
}
CONF
my $base = 'http://127.0.0.1:' . $t->port('main') . '/status';

# trip 127.0.0.1:C1 (1 request in 4 goes there), and make dead fail before any peer
my $tripped;
for my $i (1 .. 12) { $tripped = $i, last if $t->http('main', "/app?$i")->{status} == 502 }
ok($tripped, "127.0.0.1:$c1 refused a request");
is($t->http('main', "/dead?$_")->{status}, 502, "/dead?$_: 502") for 1 .. 2;

my $json = decode_json($t->http('main', '/status?format=json')->{body});

# The <tr> of a peer in the rendered DOM.
sub row {
    my ($dom, $peer) = @_;
    my ($tr) = $dom =~ m{(<tr class="peer" data-peer="\Q$peer\E">.*?</tr>)}s;
    return $tr // '';
}

# --- the whole status
my $dom = chromium($t, $base, budget => 3000);
like($dom, qr/data-updated="\Q$json->{time}\E"|data-updated="\d{4}-\d\d-\d\dT/,
     'the page drew the JSON it fetched (body data-updated set)');
like($dom, qr{<section class="upstream" data-upstream="app"><h2>app<span class="tag">keepalive 4</span>},
     'a section per upstream, named, with its keepalive');
like($dom, qr{<section class="upstream" data-upstream="dead">}, 'dead has its section');
my %want = ($ok->addr => 'up', "127.0.0.1:$c1" => 'unavailable', "127.0.0.1:$c2" => 'down',
            "127.0.0.1:$c3" => 'up');
for my $peer (sort keys %want) {
    like(row($dom, $peer), qr{<span class="state state-$want{$peer}">$want{$peer}</span>},
         "$peer: state $want{$peer}, coloured by its class");
}
my $r1 = row($dom, "127.0.0.1:$c1");
like($r1, qr{<span class="cause">connect_refused 1</span>}, 'refused peer: failures by cause');
like($r1, qr{<td class="last" title="\d{4}-[^"]+">connect_refused \(errno 111\) in connect, 502, \d+ s ago</td>},
     'refused peer: last failure with errno, phase, status, age');
my $hint = $json->{upstreams}{app}{peers}[1]{hint};
if (defined $hint) {
    like($r1, qr{<td class="hint">\Q$hint\E</td>}, 'refused peer: its hint');
} else {
    like($r1, qr{<td class="none">—</td></tr>$}, 'refused peer: no hint yet, a dash');
}
like(row($dom, "127.0.0.1:$c3"), qr{<span class="tag">backup</span>}, 'backup peer: tagged');
like($dom, qr{before a peer was chosen: <span class="cause own">no_live_upstreams 1</span>},
     'dead: the failure before any peer was chosen');
like($dom, qr{<span class="part">unhealthy <b class="rate-bad">2</b></span>},
     'dead: 2 unhealthy peers in its summary, flagged');
my $recent = () = $dom =~ /<tr class="failure">/g;
is($recent, scalar @{ $json->{recent_failures} },
   'the recent failures list has the JSON\'s entries (' . scalar(@{ $json->{recent_failures} }) . ')');
like($dom, qr{<section class="recent" id="recent"><h2>Recent failures</h2>}, 'recent failures section');
like($dom, qr{<span id="meta">nginx \Q$json->{nginx_version}\E · module \Q$json->{version}\E · pid \d+ · generation 1},
     'header: versions, pid, generation');

# --- filters reach the JSON
$dom = chromium($t, "$base?upstream=app&state=unhealthy", budget => 3000);
my @peers = $dom =~ /<tr class="peer" data-peer="([^"]+)">/g;
is_deeply(\@peers, ["127.0.0.1:$c1"], '?upstream=app&state=unhealthy: only the unavailable peer');
unlike($dom, qr/data-upstream="dead"/, '?upstream=app: no other upstream');

# --- the JSON cannot be had: the page says so, with the error the server gave
$dom = chromium($t, 'http://127.0.0.1:' . $t->port('main') . '/broken', budget => 2000);
unlike($dom, qr/data-upstream=/, 'JSON refused: nothing drawn');
like($dom, qr{<span id="status" class="error">update failed: HTTP 503: maintenance \(showing the last data\)</span>},
     'JSON refused: the page shows the status and error of the JSON request');

# --- self-refresh: ?refresh=1 fetches the JSON again every second
sub json_fetches {
    my ($re) = @_;
    return scalar grep { /^\/status\?format=json[^|]*\|200$/ && $_ =~ $re } $t->log_lines('access.log');
}
my $before = json_fetches(qr/state=down/);
chromium($t, "$base?refresh=1&state=down", budget => 4500);
my $n = json_fetches(qr/state=down/) - $before;
ok($n >= 3, "?refresh=1 for 4.5 s (virtual): the page fetched the JSON again ($n times)");
$before = json_fetches(qr/state=up/);
chromium($t, "$base?refresh=0&state=up", budget => 4500);
is(json_fetches(qr/state=up/) - $before, 1, '?refresh=0: fetched once, no updates');

# --- screenshot artifact
my $png = chromium($t, $base, budget => 3000, screenshot => $t->prefix . '/status_html.png',
                   size => '1400,800');
ok($png && -s $png > 10_000, 'a screenshot of the page');
my $magic = '';
if ($png && open my $fh, '<:raw', $png) { read $fh, $magic, 8 }
is($magic, "\x89PNG\r\n\x1a\n", 'the screenshot is a PNG');
make_path(ARTIFACTS);
my $kept = ARTIFACTS . '/status_html.png';
ok($png && copy($png, $kept), "screenshot kept at $kept");
diag("screenshot: $kept" . ($ENV{TRIAGE_KEEP} ? " and $png" : ''));

$t->stop;
done_testing;
