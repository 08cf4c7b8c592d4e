#!/usr/bin/perl
# `nginx -t` rejects bad triage configuration with an nginx-style message that
# names the file and line, and accepts a good one.   Run alone: prove -v t/config_errors.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness;

my $t = Triage::Harness->new;
my $file = $t->conf_file;

# %%HTTP%%, %%SERVER%%, %%LOCATION%% receive the directives under test.
my $tmpl = <<'CONF';
%%LOAD_MODULE%%
events { worker_connections 64; }
http {
    %%HTTP%%
    server {
        listen 127.0.0.1:%%PORT_main%%;
        %%SERVER%%
        location / {
            %%LOCATION%%
            return 204;
        }
        location = /status {
            %%STATUS%%
        }
    }
}
CONF

sub conf {
    my (%v) = @_;
    return ($tmpl, HTTP => '', SERVER => '', LOCATION => '', STATUS => 'triage_status;', %v);
}

# bad(name, {placeholder => directives}, qr/line marker/, qr/message/)
# The message must be an [emerg] ending in " in <conf file>:<line of marker>".
sub bad {
    my ($name, $v, $marker, $msg) = @_;
    my ($rc, $out) = $t->test_config(conf(%$v));
    my $line = $t->line_of($marker);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/nginx: \[emerg\] (?:$msg)[^\n]* in \Q$file\E:$line$/m,
         "$name: [emerg] message names $file:$line")
        or diag("config:\n$t->{conf}");
    unlike($out, qr/test is successful/, "$name: not successful");
}

bad('flag with a bad value', { LOCATION => 'triage maybe;' }, qr/triage maybe/,
    qr/invalid value "maybe" in "triage" directive, it must be "on" or "off"/);

bad('triage_zone with a bad size', { HTTP => 'triage_zone abc;' }, qr/triage_zone abc/,
    qr/.*"abc"|.*\babc\b/);

bad('triage_zone with a bad recent=', { HTTP => 'triage_zone 1m recent=abc;' }, qr/recent=abc/,
    qr/.*recent/);

bad('triage_zone with a bad idle=', { HTTP => 'triage_zone 1m idle=soon;' }, qr/idle=soon/,
    qr/invalid parameter "idle=soon" \(expected recent=1\.\.100000 or idle=time\|off, time at least 1s\)/);

bad('triage_zone with an idle= under a second', { HTTP => 'triage_zone 1m idle=500ms;' },
    qr/idle=500ms/, qr/invalid parameter "idle=500ms"/);

# nginx reads sizes in k and m: the message gives the bound in m
bad('triage_zone over 4096m', { HTTP => 'triage_zone 4097m;' }, qr/triage_zone 4097m/,
    qr/invalid zone size "4097m" \(at least 64k, at most 4096m\)/);
bad('triage_zone in g', { HTTP => 'triage_zone 1g;' }, qr/triage_zone 1g/,
    qr/invalid zone size "1g" \(at least 64k, at most 4096m\)/);

bad('triage_zone whose recent= takes over a third of it', { HTTP => 'triage_zone 64k recent=1000;' },
    qr/recent=1000/,
    qr/recent=1000 does not fit in a zone of 64k: an entry takes \d+ bytes and the list at most a third of the zone \(here recent=\d+; recent=1000 needs \d+k\)/);

bad('triage_zone whose recent= needs megabytes', { HTTP => 'triage_zone 1m recent=100000;' },
    qr/recent=100000/, qr/recent=100000 does not fit in a zone of 1m: .* needs \d+m\)/);

# A zone of the configuration named like one of the module's: the error says whose the name
# is (nginx's own says "already declared for a different use"). The module declares its
# zones when http{} ends: the line is that of its closing brace.
bad('a limit_req zone named "triage"',
    { HTTP => 'limit_req_zone $binary_remote_addr zone=triage:1m rate=1r/s;' }, qr/^\}$/,
    qr/the shared memory zone "triage" holds nginx-triage's counters, and the configuration declares another zone of that name \(limit_req_zone, limit_conn_zone, an upstream's zone...\): rename that zone/);

bad('a limit_conn zone named "triage_check", with health checks',
    { HTTP => "limit_conn_zone \$binary_remote_addr zone=triage_check:1m;\n"
            . "    upstream u { server 127.0.0.1:9; check interval=1000; }" }, qr/^\}$/,
    qr/the shared memory zone "triage_check" holds nginx-triage's health checks, .*: rename that zone/);

bad('triage_zone inside server', { HTTP => 'triage_zone 1m;', SERVER => 'triage_zone 1m;' },
    qr/^ {8}triage_zone/,
    qr/"triage_zone" directive is not allowed here/);

bad('triage_status with an unknown format', { STATUS => 'triage_status foo;' },
    qr/triage_status foo/,
    qr/invalid value "foo" in "triage_status" directive, it must be "json", "prometheus" or "html"/);

bad('triage_status with two formats', { STATUS => 'triage_status json html;' },
    qr/triage_status json html/,
    qr/invalid number of arguments in "triage_status" directive/);

bad('triage_status inside server', { HTTP => 'triage_zone 1m;', SERVER => 'triage_status;' },
    qr/^        triage_status;/,
    qr/"triage_status" directive is not allowed here/);

bad('duplicate triage', { LOCATION => "triage on;\n            triage off;" }, qr/triage off;/,
    qr/"triage" directive is duplicate/);

bad('duplicate triage_zone', { HTTP => "triage_zone 1m;\n    triage_zone 2m;" }, qr/triage_zone 2m/,
    qr/"triage_zone" directive is duplicate/);

# a good config using every directive passes
{
    my ($rc, $out) = $t->test_config(conf(
        HTTP     => "triage_zone 1m recent=100;\n    triage on;",
        SERVER   => 'triage off;',
        LOCATION => 'triage on;',
        STATUS   => 'triage_status prometheus;'));
    is($rc, 0, 'good config: nginx -t succeeds') or diag($out);
    like($out, qr/syntax is ok/, 'good config: syntax is ok');
    like($out, qr/test is successful/, 'good config: test is successful');
}
{
    my ($rc, $out) = $t->test_config(conf(HTTP => 'triage_zone 1m;', LOCATION => 'triage off;'));
    is($rc, 0, 'good config (no recent=, triage off): nginx -t succeeds') or diag($out);
}

done_testing;
