#!/usr/bin/perl
# Which format a status request gets: `triage_status [json|prometheus|html]` sets the
# location's own, `Accept` (q-values) chooses when there is no ?format=, ?format= decides.
# Bad arguments get a 400 JSON error, an unknown ?upstream= a 404 JSON error; nothing of the
# request but format, upstream, state and refresh is reflected.
#   Run alone: prove -v t/status_negotiate.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Triage::Harness;
use Triage::Backend;

my $t = Triage::Harness->new;
my $closed = Triage::Backend::closed_port();

$t->start(<<'CONF', CLOSED => $closed);
%%LOAD_MODULE%%
events { worker_connections 64; }
http {
    upstream app { server 127.0.0.1:%%CLOSED%%; }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /app { proxy_pass http://app; }
        location = /s      { triage_status; }
        location = /s/json { triage_status json; }
        location = /s/prom { triage_status prometheus; }
        location = /s/html { triage_status html; }
    }
}
CONF

my %CT = (
    json       => qr{^application/json$},
    prometheus => qr{^text/plain; version=0\.0\.4; charset=utf-8$},
    html       => qr{^text/html; charset=utf-8$},
);

# What format a response is in, from its Content-Type, checked against its body.
sub format_of {
    my ($r) = @_;
    my $ct = $r->{headers}{'content-type'} // '';
    my ($f) = grep { $ct =~ $CT{$_} } keys %CT;
    return "status $r->{status}, Content-Type '$ct'" unless $r->{status} == 200 && $f;
    my $body_ok = $f eq 'json' ? eval { decode_json($r->{body})->{upstreams} }
                : $f eq 'prometheus' ? $r->{body} =~ /^# TYPE nginx_triage_peer_up gauge$/m
                : $r->{body} =~ /^<!DOCTYPE html>/;
    return $body_ok ? $f : "$f Content-Type with another body";
}

my $BROWSER = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,'
            . 'image/webp,*/*;q=0.8';
my $SCRAPER = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;'
            . 'version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

# [location, Accept (undef = none), query, expected format]
my @cases = (
    [ '/s',      undef,                       '', 'json' ],
    [ '/s/json', undef,                       '', 'json' ],
    [ '/s/prom', undef,                       '', 'prometheus' ],
    [ '/s/html', undef,                       '', 'html' ],
    [ '/s',      '*/*',                       '', 'json' ],
    [ '/s/prom', '*/*',                       '', 'prometheus' ],
    [ '/s/html', '*/*',                       '', 'html' ],
    [ '/s',      $BROWSER,                    '', 'html' ],
    [ '/s/prom', $BROWSER,                    '', 'html' ],
    [ '/s',      $SCRAPER,                    '', 'prometheus' ],
    [ '/s/html', $SCRAPER,                    '', 'prometheus' ],
    [ '/s',      'text/plain',                '', 'prometheus' ],
    [ '/s',      'application/openmetrics-text', '', 'prometheus' ],
    [ '/s/html', 'application/json',          '', 'json' ],
    [ '/s',      'text/html;q=0.4, application/json;q=0.6', '', 'json' ],
    [ '/s',      'text/html;q=0.6, application/json;q=0.4', '', 'html' ],
    [ '/s/html', 'text/html;q=0, */*',        '', 'json' ],
    [ '/s/prom', 'image/png',                 '', 'prometheus' ],
    [ '/s',      'TEXT/PLAIN',                '', 'prometheus' ],
    [ '/s',      $BROWSER,                    '?format=json', 'json' ],
    [ '/s',      $SCRAPER,                    '?format=html', 'html' ],
    [ '/s/html', 'application/json',          '?format=prometheus', 'prometheus' ],
    [ '/s/prom', undef,                       '?format=json&format=html', 'json' ],
    [ '/s/prom', undef,                       '?format=', 'prometheus' ],
);
for my $c (@cases) {
    my ($loc, $accept, $q, $want) = @$c;
    my $r = $t->http('main', "$loc$q", headers => { defined $accept ? (Accept => $accept) : () });
    is(format_of($r), $want, "$loc$q, Accept: " . ($accept // '(none)') . " -> $want");
    is($r->{headers}{vary}, 'Accept', "$loc$q: Vary: Accept");
}
# two Accept header lines count as one list
{
    my $r = $t->http('main', '/s', headers => [ Accept => 'image/png', Accept => 'text/html' ]);
    is(format_of($r), 'html', 'two Accept lines: read together');
}

# --- errors: JSON, no-store, the value is not repeated (except an unknown upstream's name)
sub error_of {
    my ($path, $status, $re, $what) = @_;
    my $r = $t->http('main', $path, headers => { Accept => 'text/html' });
    is($r->{status}, $status, "$what: $status");
    is($r->{headers}{'content-type'}, 'application/json', "$what: a JSON error");
    is($r->{headers}{'cache-control'}, 'no-store', "$what: no-store");
    my $j = eval { decode_json($r->{body}) } || {};
    like($j->{error} // '', $re, "$what: error message");
    return ($j, $r->{body});
}
for my $bad (['format=xml<i>', qr/^invalid format: expected json, prometheus or html$/],
             ['state=sideways<i>', qr/^invalid state: expected up, down or unhealthy$/],
             ['refresh=-1<i>', qr/^invalid refresh/], ['refresh=3601', qr/^invalid refresh/]) {
    my ($j, $body) = error_of("/s?$bad->[0]", 400, $bad->[1], "?$bad->[0]");
    unlike($body, qr/xml|sideways|<i>|-1|3601/, "?$bad->[0]: the bad value is not reflected");
}
{
    my ($j) = error_of('/s?upstream=nope', 404, qr/^unknown upstream$/, '?upstream=nope');
    is($j->{upstream}, 'nope', '?upstream=nope: names the upstream asked for');
    ($j) = error_of('/s/html?upstream=ap', 404, qr/^unknown upstream$/, 'html, ?upstream=ap');
    my $r = $t->http('main', '/s?upstream=%61pp');
    is($r->{status}, 200, '?upstream=%61pp: percent-decoded, found');
}

# --- nothing else of the request is reflected
{
    my $mark = 'zq' . int(rand(1e9));
    for my $f (qw(json prometheus html)) {
        my $r = $t->http('main', "/s?format=$f&$mark=1&x=$mark&upstream=app",
            headers => { 'X-Probe' => $mark, 'User-Agent' => $mark, Referer => "http://$mark/",
                         Cookie => "c=$mark" });
        is($r->{status}, 200, "$f with extra arguments and headers: 200");
        unlike($r->{body}, qr/\Q$mark\E/, "$f: no other argument or header is reflected");
    }
    my $r = $t->http('main', '/s?format=html&refresh=17');
    like($r->{body}, qr/var REFRESH = 17;/, 'html: ?refresh=17 is the page\'s period');
    $r = $t->http('main', '/s?format=html');
    like($r->{body}, qr/var REFRESH = 5;/, 'html: 5 s by default');
    $r = $t->http('main', '/s?format=html&refresh=0');
    like($r->{body}, qr/var REFRESH = 0;/, 'html: refresh=0 turns updates off');
    like($r->{headers}{'content-security-policy'} // '', qr/default-src 'none'/,
         'html: a Content-Security-Policy that allows no external asset');
}

$t->stop;
done_testing;
