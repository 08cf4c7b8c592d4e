#!/usr/bin/perl
# A module built for one nginx version refuses to load into another with nginx's own
# message (`module "..." version 1028003 instead of 1022001`), exit status 1, no crash;
# in both directions, for `nginx -t` and for a real start.
#
# Needs two nginx builds of different versions, each with its module:
#   TRIAGE_NGINX / TRIAGE_MODULE               (default: nginx-build/out, vendored 1.28.3)
#   TRIAGE_OTHER_NGINX / TRIAGE_OTHER_MODULE   e.g. /usr/sbin/nginx and
#                                              nginx-build/out-debian/modules/... (1.22.1)
# nginx-build/test sets the latter after `nginx-build/build --debian`.
#   Run alone: TRIAGE_OTHER_NGINX=/usr/sbin/nginx \
#     TRIAGE_OTHER_MODULE=$PWD/nginx-build/out-debian/modules/ngx_http_triage_module.so \
#     prove -v t/version_mismatch.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness;

my ($other_nginx, $other_module) = @ENV{qw(TRIAGE_OTHER_NGINX TRIAGE_OTHER_MODULE)};
plan skip_all => 'needs TRIAGE_OTHER_NGINX and TRIAGE_OTHER_MODULE (nginx-build/test sets them)'
    unless $other_nginx && $other_module;

my $a = Triage::Harness->new(name => 'version_mismatch_a');
my $b = Triage::Harness->new(name => 'version_mismatch_b',
                             nginx => $other_nginx, module => $other_module);
for my $h ($a, $b) {
    ok(-f $h->module_path, 'module exists: ' . $h->module_path);
}

# 1.22.1 -> 1022001, as nginx_version in nginx.h
sub number { my ($x, $y, $z) = split /\./, $_[0]; $x * 1_000_000 + $y * 1_000 + $z }

my %num = map { $_ => number($_->nginx_version) } $a, $b;
isnt($num{$a}, $num{$b}, "two nginx versions: $num{$a} and $num{$b}")
    or BAIL_OUT('TRIAGE_OTHER_NGINX must be another nginx version than TRIAGE_NGINX');

my $tmpl = <<'CONF';
load_module %%MODULE%%;
events { worker_connections 64; }
http {
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location = /status { triage_status; }
    }
}
CONF

# Each module loads into its own nginx and its directives work.
for my $h ($a, $b) {
    my ($rc, $out) = $h->test_config($tmpl, MODULE => $h->module_path);
    is($rc, 0, 'nginx ' . $h->nginx_version . ': its own module loads (nginx -t)')
        or diag($out);
}

# ...and is refused by the other one.
for my $pair ([$a, $b], [$b, $a]) {
    my ($host, $guest) = @$pair;
    my $name = sprintf 'module for %s into nginx %s', $guest->nginx_version, $host->nginx_version;
    my $file = $host->conf_file;
    # nginx -t: "nginx: [emerg] module ..."; error.log: "... [emerg] 123#0: module ..."
    my $so = $guest->module_path;
    my $msg = qq{module "$so" version $num{$guest} instead of $num{$host} in $file:1};
    my $want = qr/\[emerg\] (?:\d+#\d+: )?\Q$msg\E$/m;

    my ($rc, $out) = $host->test_config($tmpl, MODULE => $guest->module_path);
    is($rc, 1, "$name: nginx -t exits with status 1 (no crash)");
    like($out, $want, "$name: nginx -t names both versions, the file and the line");
    unlike($out, qr/test is successful/, "$name: nginx -t not successful");

    my $mark = $host->error_log_mark;
    my $started = eval { $host->start($tmpl, MODULE => $guest->module_path); 1 };
    ok(!$started, "$name: nginx does not start");
    like($@, qr/exited with status 1\b/, "$name: the master exits with status 1 (no crash)");
    like($host->error_log_since($mark), $want, "$name: error.log has the same message");
}

done_testing;
