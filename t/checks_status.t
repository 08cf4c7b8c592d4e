#!/usr/bin/perl
# check_status answers in nginx_upstream_check_module's formats and field names (html, csv,
# json; ?format= and ?status=up|down as UCM), so that existing scrapers keep working.
#   Run alone: prove -v t/checks_status.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use Triage::Harness qw(wait_until);
use Triage::Backend;

my $t = Triage::Harness->new;
my $a = $t->backend('ok');
my $c = $t->backend('ok');
my $dead = Triage::Backend::closed_port();
my ($A, $B, $C) = ($a->addr, "127.0.0.1:$dead", $c->addr);

my $conf = <<'CONF';
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 64; }
http {
    access_log off;
    upstream u1 {
        server %%A%%;
        server %%B%%;
        check interval=200 rise=1 fall=1 timeout=500 type=http;
    }
    upstream u2 {
        server %%C%%;
        check interval=200 rise=1 fall=1 timeout=500 port=%%CPORT%%;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location = /cs { check_status; }
        location = /cs_csv { check_status csv; }
        location = /cs_json { check_status json; }
    }
    # UCM takes check_status in a server{} too: a server of its own for the page
    server {
        listen 127.0.0.1:%%PORT_cs%%;
        check_status csv;
    }
}
CONF
my %v = (A => $A, B => $B, C => $C, CPORT => $c->port);
$t->start($conf, %v);

# settle: A and C up, B down
my $csv;
wait_until(sub {
    $csv = $t->http('main', '/cs_csv')->{body} // '';
    $csv =~ /^0,u1,\Q$A\E,up,/m && $csv =~ /^1,u1,\Q$B\E,down,0,[1-9]/m && $csv =~ /^2,u2,\Q$C\E,up,/m;
}, 5);

{
    my $r = $t->http('cs', '/');
    is($r->{status}, 200, 'check_status in server{}: 200');
    is($r->{body}, $csv, 'check_status in server{}: the same csv');
}

{
    my $r = $t->http('main', '/cs_csv');
    is($r->{status}, 200, 'csv: 200');
    like($r->{headers}{'content-type'}, qr{^text/plain}, 'csv: text/plain');
    my @l = split /\n/, $r->{body};
    is(scalar @l, 3, 'csv: one line per checked peer');
    like($l[0], qr/^0,u1,\Q$A\E,up,[1-9]\d*,0,http,0$/, 'csv: index,upstream,name,status,rise,fall,type,port (up)');
    like($l[1], qr/^1,u1,\Q$B\E,down,0,[1-9]\d*,http,0$/, 'csv: the dead peer is down with its fall count');
    like($l[2], qr/^2,u2,\Q$C\E,up,[1-9]\d*,0,tcp,${\ $c->port}$/, 'csv: type tcp and the check port');
}

{
    my $r = $t->http('main', '/cs_json');
    is($r->{status}, 200, 'json: 200');
    like($r->{headers}{'content-type'}, qr{^application/json}, 'json: application/json');
    my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
    my $s = $j->{servers} || {};
    is($s->{total}, 3, 'json: servers.total');
    is($s->{generation}, 1, 'json: servers.generation (configuration loads)');
    my @srv = @{ $s->{server} || [] };
    is_deeply([ map { $_->{name} } @srv ], [ $A, $B, $C ], 'json: servers.server[].name in order');
    is_deeply([ sort keys %{ $srv[1] || {} } ], [qw(fall index name port rise status type upstream)],
              'json: UCM field names');
    is($srv[1]{status}, 'down', 'json: status down');
    is($srv[1]{index}, 1, 'json: index');
    is($srv[1]{upstream}, 'u1', 'json: upstream');
    ok($srv[1]{fall} >= 1 && $srv[1]{rise} == 0, 'json: rise and fall are numbers');
    is($srv[2]{type}, 'tcp', 'json: type');
}

{
    my $r = $t->http('main', '/cs');
    is($r->{status}, 200, 'html (default): 200');
    like($r->{headers}{'content-type'}, qr{^text/html}, 'html: text/html');
    like($r->{body}, qr{<h1>Nginx http upstream check status</h1>}, 'html: UCM title');
    like($r->{body}, qr{<h2>Check upstream server number: 3, generation: 1</h2>}, 'html: count and generation');
    like($r->{body}, qr{<tr bgcolor="#FF0000">\s*<td>1</td>\s*<td>u1</td>\s*<td>\Q$B\E</td>\s*<td>down</td>},
         'html: the down peer in a red row');
    like($r->{body}, qr{<th>Rise counts</th>\s*<th>Fall counts</th>\s*<th>Check type</th>\s*<th>Check port</th>},
         'html: UCM columns');
}

{
    my $r = $t->http('main', '/cs?format=json&status=down');
    like($r->{headers}{'content-type'}, qr{^application/json}, '?format=json overrides the location format');
    my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
    is($j->{servers}{total}, 1, '?status=down: one peer');
    is($j->{servers}{server}[0]{name}, $B, '?status=down: the dead one, with its index');
    is($j->{servers}{server}[0]{index}, 1, '?status=down: index kept');
    $r = $t->http('main', '/cs_json?status=up&format=csv');
    is(scalar(split /\n/, $r->{body}), 2, '?status=up&format=csv: the two up peers');
    $r = $t->http('main', '/cs_csv', method => 'HEAD');
    is($r->{status}, 200, 'HEAD: 200');
    $r = $t->http('main', '/cs_csv', method => 'POST');
    is($r->{status}, 405, 'POST: 405');
}

$t->reload($conf, %v);
{
    my $j = eval { JSON::PP::decode_json($t->http('main', '/cs_json')->{body}) } || {};
    is($j->{servers}{generation}, 2, 'json: generation counts the reload');
}
$t->stop;
done_testing;
