package Triage::Status;

# Helpers of the status tests (t/status_*.t): the real tools that check what triage_status
# answers, and a bounded way to run them. Core Perl only.
#
#   use Triage::Status qw(need_tools validate_json promtool_check chromium status_doc);
#   need_tools(qw(jsonschema promtool chromium));   # fails the test (never skips) if missing
#   my ($ok, $out) = validate_json($t, $json_text, ...);  # docs/status.schema.json, 2020-12
#   my ($ok, $out) = promtool_check($t, $metrics_text);   # promtool check metrics: clean?
#   my $dom = chromium($t, $url, budget => 3000, screenshot => "$dir/x.png");
#
# Tools (Debian packages; t/tools/install-status-tools installs them, .ci/run calls it):
#   jsonschema  /usr/bin/python3 with python3-jsonschema (Draft202012Validator)
#   promtool    from the prometheus package, extracted to /usr/local/bin
#   chromium    /usr/bin/chromium, run headless with the flags this machine needs
# A missing tool is installed when the test runs as root; otherwise, or if that fails, the
# test fails with the command to run.

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX qw(WNOHANG);
use Test::More ();
use Triage::Harness qw(wait_until);

use Exporter 'import';
our @EXPORT_OK = qw(need_tools validate_json promtool_check chromium run_cmd write_file
                    SCHEMA ARTIFACTS);

my $T_DIR = abs_path(dirname(__FILE__) . '/../..');
my $REPO = dirname($T_DIR);
my $INSTALL = "$T_DIR/tools/install-status-tools";
my $VALIDATE = "$T_DIR/tools/validate-json-schema.py";
use constant SCHEMA => abs_path(dirname(__FILE__) . '/../../..') . '/docs/status.schema.json';
use constant ARTIFACTS => abs_path(dirname(__FILE__) . '/../..') . '/artifacts';

my %CHECK = (
    jsonschema => sub {
        (run_cmd(['/usr/bin/python3', '-c', 'from jsonschema import Draft202012Validator'],
                 30))[0] == 0;
    },
    promtool => sub { (run_cmd([ 'promtool', '--version' ], 30))[0] == 0 },
    chromium => sub { -x '/usr/bin/chromium' },
);

# need_tools(names): every tool is there, or the test fails here.
sub need_tools {
    my @missing = grep { !$CHECK{$_}->() } @_;
    if (@missing && $> == 0) {
        Test::More::note("installing the status test tools: @missing ($INSTALL)");
        my ($rc, $out, $err) = run_cmd([$INSTALL], 900);
        Test::More::diag("$INSTALL failed ($rc):\n$out$err") if $rc;
        @missing = grep { !$CHECK{$_}->() } @_;
    }
    for my $tool (@_) {
        my $have = !grep { $_ eq $tool } @missing;
        Test::More::ok($have, "tool $tool is installed")
            or Test::More::diag("missing: $tool; run as root: $INSTALL");
    }
    die "status test tools missing: @missing\n" if @missing;
}

# run_cmd([cmd...], timeout, stdin => $file) -> (exit code, stdout, stderr); -1 on timeout.
my $SEQ = 0;
sub run_cmd {
    my ($cmd, $timeout, %opt) = @_;
    my $dir = "$T_DIR/tmp";
    make_path($dir);
    my $base = "$dir/cmd.$$." . $SEQ++;
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        Triage::Harness::die_with_parent('KILL');
        POSIX::setpgid(0, 0);    # its own group: a timeout kills chromium's children too
        open STDIN, '<', $opt{stdin} // '/dev/null';
        open STDOUT, '>', "$base.out";
        open STDERR, '>', "$base.err";
        { exec @$cmd };
        POSIX::_exit(127);
    }
    my $done = wait_until(sub { waitpid($pid, WNOHANG) == $pid }, $timeout, 0.05);
    my $rc = $done ? $? >> 8 : -1;
    unless ($done) { kill 'KILL', -$pid; kill 'KILL', $pid; waitpid($pid, 0) }
    my @r = map { local $/; open my $fh, '<', $_ or return ''; my $t = <$fh> // ''; $t }
        ("$base.out", "$base.err");
    unlink "$base.out", "$base.err";
    return ($rc, @r);
}

sub write_file {
    my ($path, $content) = @_;
    open my $fh, '>', $path or croak "$path: $!";
    binmode $fh;
    print $fh $content;
    close $fh or croak "$path: $!";
    return $path;
}

# validate_json($t, @texts) -> (all valid?, validator output). Each text is written to a
# file under the test's prefix, and all are checked in one run of the validator.
sub validate_json {
    my ($t, @docs) = @_;
    my $n = 0;
    my @files = map { write_file($t->prefix . '/doc-' . $SEQ++ . '-' . $n++ . '.json', $_) } @docs;
    my ($rc, $out, $err) = run_cmd([ '/usr/bin/python3', $VALIDATE, SCHEMA, @files ], 60);
    return ($rc == 0, $out . $err);
}

# promtool_check($t, $text) -> (clean?, promtool's output). Clean = exit 0 and no output.
sub promtool_check {
    my ($t, $text) = @_;
    my $f = write_file($t->prefix . '/metrics-' . $SEQ++ . '.txt', $text);
    my ($rc, $out, $err) = run_cmd([ 'promtool', 'check', 'metrics' ], 60, stdin => $f);
    return ($rc == 0 && $out . $err eq '', "exit $rc\n$out$err");
}

# chromium($t, $url, budget => ms, screenshot => $png, size => '1400,900') -> the DOM
# after the page's scripts ran for `budget` ms of virtual time (network waits included), or
# with screenshot, the PNG's path. Headless, no sandbox (root), no background networking
# (the machine has no network but loopback), a fresh profile under the test's prefix.
sub chromium {
    my ($t, $url, %opt) = @_;
    my $profile = $t->prefix . '/chromium-' . $SEQ++;
    my @cmd = ('/usr/bin/chromium', '--headless', '--no-sandbox', '--disable-gpu',
        '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-extensions',
        '--disable-default-apps', '--mute-audio', "--user-data-dir=$profile",
        '--virtual-time-budget=' . ($opt{budget} // 3000),
        '--window-size=' . ($opt{size} // '1400,900'));
    push @cmd, $opt{screenshot} ? "--screenshot=$opt{screenshot}" : '--dump-dom', $url;
    my ($rc, $out, $err) = run_cmd(\@cmd, 60);
    Test::More::diag("chromium exited $rc:\n$err") if $rc;
    return $opt{screenshot} ? (-s $opt{screenshot} ? $opt{screenshot} : undef) : $out;
}

1;
