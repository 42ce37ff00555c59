# runlane run's keeper: the parent of COMMAND, so that COMMAND never outlives runlane's lease.
# runlane run starts it as `runlane-run-keeper -` (the program read from stdin, as the lease
# holder is) in a session of its own, so a signal to the job script's process group (Forgejo's
# cancel) never reaches it. Its descriptors:
#   0  from runlane: this program, the end marker, then NUL-terminated fields
#      GRACE-MS ENV-COUNT NAME=VALUE... ARG-COUNT COMMAND ARGS...
#      and afterwards one line per signal runlane took (SIGINT, SIGTERM, SIGHUP, SIGKILL).
#      Its end (runlane gone, however it died) is the keeper's signal to end everything.
#   1, 2  COMMAND's stdout and stderr;  3  the lane's locked lock file (the lease);
#   4  COMMAND's stdin;  5  to runlane: "started PID SUBREAPER(1|0)", "failed ERRNO MESSAGE",
#      "exited CODE SIGNAL ENDED KILLED".
# It makes itself a child subreaper (prctl(2)), so whatever COMMAND starts, however it forks,
# setsids or daemonizes, stays its descendant. When COMMAND exits it ends each process COMMAND
# left (SIGTERM, then GRACE-MS later SIGKILL with the tree frozen by SIGSTOP first), then
# reports. When runlane is gone it SIGKILLs COMMAND and all it left at once, and exits: the
# lease it holds on fd 3 ends only then, so no sweep reaps a lane that a process of COMMAND
# still writes. COMMAND runs with PR_SET_PDEATHSIG: a keeper killed outright takes COMMAND along.
use strict;
use POSIX ();
use Fcntl qw(F_GETFD F_SETFD FD_CLOEXEC F_GETFL F_SETFL O_NONBLOCK);

my $now = eval {
  require Time::HiRes;
  my $clock = Time::HiRes::CLOCK_MONOTONIC();
  sub { Time::HiRes::clock_gettime($clock) };
} || sub { time };

open(my $report, '>&=', 5) or exit 70;
select((select($report), $| = 1)[0]);
sub fields {
  local $/ = "\0";
  my @out;
  for (1 .. $_[0]) {
    my $field = <DATA>;
    exit 71 unless defined $field && chomp($field);
    push @out, $field;
  }
  return @out;
}
my ($grace_ms, $env_count) = fields(2);
my @env = fields($env_count);
my ($arg_count) = fields(1);
my @command = fields($arg_count);
exit 71 unless @command && $grace_ms =~ /^\d+$/;

# Neither runlane's channels nor the lease go to COMMAND.
for my $fd (3, 5) {
  open(my $handle, '<&=', $fd) or next;
  my $flags = fcntl($handle, F_GETFD, 0);
  fcntl($handle, F_SETFD, $flags | FD_CLOEXEC) if defined $flags;
}

# prctl(2) by number: syscall.ph where perl has it, else the number of the common architectures.
my $prctl = eval { require 'syscall.ph'; &SYS_prctl } // do {
  require Config;
  my $arch = $Config::Config{archname};
  $arch =~ /^x86_64/ ? 157 : $arch =~ /^(aarch64|riscv64)/ ? 167 : $arch =~ /^(i.86|arm|s390)/ ? 172 : undef;
};
sub prctl { defined $prctl && syscall($prctl, $_[0], $_[1], 0, 0, 0) == 0 }
my $subreaper = prctl(36, 1);    # PR_SET_CHILD_SUBREAPER
if (open(my $comm, '>', '/proc/self/comm')) { print $comm 'runlane-run'; close $comm; }

my $keeper = $$;
pipe(my $exec_read, my $exec_write) or do { print $report "failed 0 pipe: $!\n"; exit 72 };
# A child's exit wakes the main loop at once (a self-pipe: a SIGCHLD that comes just before
# select(2) is not lost), so runlane learns of COMMAND's end without waiting out a poll.
pipe(my $wake_read, my $wake_write) or do { print $report "failed 0 pipe: $!\n"; exit 72 };
fcntl($wake_write, F_SETFL, fcntl($wake_write, F_GETFL, 0) | O_NONBLOCK);
$SIG{CHLD} = sub { syswrite($wake_write, 'x') };
my $pid = fork;
if (!defined $pid) { print $report 'failed ', $! + 0, " fork: $!\n"; exit 72 }
if ($pid == 0) {
  close $exec_read;
  POSIX::setpgid(0, 0);
  prctl(1, 9);    # PR_SET_PDEATHSIG: SIGKILL when the keeper dies
  POSIX::_exit(137) if getppid() != $keeper;
  POSIX::dup2(4, 0);
  POSIX::close(4);
  $SIG{CHLD} = 'DEFAULT';
  %ENV = map { /^([^=]*)=(.*)$/s ? ($1, $2) : () } @env;
  { no warnings 'exec'; exec { $command[0] } @command; }
  syswrite($exec_write, ($! + 0) . " $!");
  POSIX::_exit(127);
}
POSIX::setpgid($pid, $pid);
POSIX::close(4);
close $exec_write;
my $exec_error = do { local $/; <$exec_read> } // '';
close $exec_read;

my $runlane_gone = 0;
my @pending;    # signals runlane passed on, not yet acted on
sub listen_runlane {
  my ($wait) = @_;
  my $in = '';
  vec($in, fileno($wake_read), 1) = 1;
  vec($in, fileno(DATA), 1) = 1 unless $runlane_gone;
  return unless select(my $ready = $in, undef, undef, $wait) > 0;
  sysread($wake_read, my $woken, 4096) if vec($ready, fileno($wake_read), 1);
  return if $runlane_gone || !vec($ready, fileno(DATA), 1);
  my $got = sysread(DATA, my $text, 4096);
  if (!$got) { $runlane_gone = 1; return }
  push @pending, $text =~ /(SIG[A-Z]+)/g;
}

my ($status, %reaped);
sub reap {
  while ((my $child = waitpid(-1, POSIX::WNOHANG())) > 0) {
    $status = $? if $child == $pid;
    $reaped{$child} = 1;
  }
}

if ($exec_error ne '') {
  waitpid($pid, 0);
  my ($errno, $message) = split / /, $exec_error, 2;
  print $report "failed $errno $message\n";
  exit 0;
}
$SIG{PIPE} = 'IGNORE';
print $report "started $pid ", ($subreaper ? 1 : 0), "\n";

# The keeper's descendants that still run (zombies are done), from /proc.
sub descendants {
  opendir(my $proc, '/proc') or return ();
  my %children;
  for my $each (grep { /^\d+$/ } readdir $proc) {
    open(my $fh, '<', "/proc/$each/stat") or next;
    my $stat = <$fh> // next;
    my $end = rindex($stat, ')');
    next if $end < 0;
    my ($state, $parent) = split / /, substr($stat, $end + 2), 3;
    push @{ $children{$parent} }, [$each, $state];
  }
  my @found;
  my @queue = ($keeper);
  while (@queue) {
    for my $child (@{ $children{ shift @queue } // [] }) {
      push @queue, $child->[0];
      push @found, $child->[0] unless $child->[1] =~ /^[ZX]/;
    }
  }
  return @found;
}

$SIG{$_} = sub { push @pending, "SIG$_[0]" } for qw(TERM INT HUP);
my $hurry = 0;    # runlane escalated to SIGKILL: what COMMAND left gets no grace either
while (!defined $status) {
  listen_runlane(0.25);
  reap();
  for my $signal (splice @pending) {
    $hurry = 1 if $signal eq 'SIGKILL';
    kill(($signal =~ s/^SIG//r), -$pid);
  }
  kill('KILL', -$pid) if $runlane_gone;
  last if $runlane_gone;
}

# Ends every process COMMAND left: SIGTERM (and SIGCONT, so a stopped one sees it), then at
# the grace's end, or at once when runlane is gone or passes SIGKILL, freezes the tree with
# SIGSTOP until no new process appears and kills it.
my (%ended, %killed);
my $deadline = $now->() + ($runlane_gone || $hurry ? 0 : $grace_ms / 1000);
while (my @left = descendants()) {
  my @new = grep { !$ended{$_} } @left;
  $ended{$_} = 1 for @new;
  kill('TERM', @new), kill('CONT', @new) if @new;
  listen_runlane(0.05);
  reap();
  last if $runlane_gone || $now->() >= $deadline || grep { $_ eq 'SIGKILL' } splice @pending;
}
for (my $round = 0; $round < 1000; $round++) {
  my @left = descendants();
  last unless @left;
  my %frozen;
  while (my @more = grep { !$frozen{$_} } descendants()) {
    kill('STOP', @more);
    $frozen{$_} = 1 for @more;
  }
  $ended{$_} = $killed{$_} = 1 for keys %frozen;
  kill('KILL', keys %frozen);
  reap();
  select(undef, undef, undef, 0.01) if descendants();
  reap();
}
exit 0 if $runlane_gone;
$status //= 0;
my ($code, $signal) = ($status >> 8, $status & 127);
delete $ended{$pid};
printf $report "exited %d %d %d %d\n", $code, $signal, scalar(keys %ended), scalar(grep { $_ != $pid } keys %killed);
exit 0;
