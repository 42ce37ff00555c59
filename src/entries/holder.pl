# runlane's lease holder, for hosts with perl: the same contract as the node holder
# (src/core/holder.ts) in a process that starts in milliseconds instead of a node start-up.
# main runs it as `runlane-lease <lock> -` (argv[0], and the program read from stdin, so
# nothing of it shows in the command line for a `pkill -f` to match) with the locked
# descriptor as fd 3; after the program's end marker come its arguments, NUL-separated:
# LOCK WORKER-PID WORKER-START LEASE-MS|none [WATCH-PATH DEV INO]...
# It prints "ready" once fd 3 is checked to be LOCK and locked, "failed <why>" if not, and
# "unavailable <why>" when this perl lacks what it needs (main then starts the node holder). It
# holds the lock until SIGTERM (post), the worker's death, a watched directory's removal or
# replacement, or LEASE-MS on the monotonic clock. $0 is never assigned: perl would overwrite
# the environment's memory with it, and the runner finds the job's processes there.
use strict;
use Fcntl qw(:flock);

$| = 1;
my $now = eval {
  require Time::HiRes;
  my $clock = Time::HiRes::CLOCK_MONOTONIC();
  # clock_gettime answers -1 when the clock fails: a bound that would never come.
  die "CLOCK_MONOTONIC fails\n" if Time::HiRes::clock_gettime($clock) < 0;
  sub { Time::HiRes::clock_gettime($clock) };
};
unless ($now) {
  my $why = $@ =~ s/\s+/ /gr;
  print "unavailable no monotonic clock: $why\n";
  exit 3;
}

my ($lock, $worker, $worker_start, $lease_ms, @watch) = split /\0/, do { local $/; <DATA> } // '', -1;
close DATA;
close STDIN;
sub fail { print "failed $_[0]\n"; exit 2 }
fail('bad arguments') unless defined $lease_ms && @watch % 3 == 0;
open(my $held, '<&=', 3) or fail("the lock descriptor is not open: $!");
my @held = stat($held) or fail("the lock descriptor: $!");
my @named = lstat($lock) or fail("$lock: $!");
fail('the lock file was replaced') unless $held[0] eq $named[0] && $held[1] eq $named[1];
# Locking what this descriptor already locks is a no-op; it fails if another holds the file,
# so "ready" always means held, whatever took the lock before us.
flock($held, LOCK_EX | LOCK_NB) or fail("the lock is not held on its descriptor: $!");

# Its name as ps and pkill show it (the kernel keeps 15 bytes): never 'perl' or 'node'.
if (open(my $comm, '>', '/proc/self/comm')) { print $comm "runlane-lease $lock"; close $comm; }
# The OOM killer should take the job's build before the lease: the lowest score allowed, never
# above the inherited one (-1000 when privileged, else searched down from the inherited value).
sub set_oom {
  open(my $adj, '>', '/proc/self/oom_score_adj') or return 0;
  return (print $adj $_[0]) && close($adj);
}
if (open(my $now, '<', '/proc/self/oom_score_adj')) {
  my $allowed = <$now>;
  close($now);
  if (defined $allowed && $allowed =~ /^\s*(-?\d+)\s*$/) {
    $allowed = $1;
    if ($allowed > -1000 && !set_oom(-1000)) {
      my $refused = -1000;
      while ($allowed - $refused > 1) {
        my $middle = int(($allowed + $refused) / 2);
        $middle-- if $middle > ($allowed + $refused) / 2;
        if (set_oom($middle)) { $allowed = $middle } else { $refused = $middle }
      }
    }
  }
}
$SIG{TERM} = sub { exit 0 };
# A cancel's SIGINT goes to the step, never to the lease.
$SIG{$_} = 'IGNORE' for qw(INT HUP PIPE);

# A process's start time (clock ticks since boot), undef once it has ended: gone, or a zombie
# whose threads have all exited.
sub start_time {
  my ($pid) = @_;
  open(my $fh, '<', "/proc/$pid/stat") or return undef;
  my $stat = do { local $/; <$fh> };
  my $end = rindex($stat, ')');
  return undef if $end < 0;
  my @fields = split / /, substr($stat, $end + 2);
  return $fields[19] if $fields[0] ne 'Z' && $fields[0] ne 'X';
  opendir(my $tasks, "/proc/$pid/task") or return undef;
  my $threads = grep { !/^\./ } readdir $tasks;
  return $threads > 1 ? $fields[19] : undef;
}

my $started = $now->();
# Nobody read it (main gone mid-handshake, so no pid was recorded): do not hold on unseen.
(print "ready\n") && close(STDOUT) or exit 1;
while (1) {
  select(undef, undef, undef, 0.5);
  exit 0 if $lease_ms ne 'none' && ($now->() - $started) * 1000 >= $lease_ms;
  exit 0 if $worker > 0 && $worker_start ne '' && (start_time($worker) // '') ne $worker_start;
  for (my $i = 0; $i < @watch; $i += 3) {
    my @now = stat($watch[$i]);
    exit 0 unless @now && $now[0] eq $watch[$i + 1] && $now[1] eq $watch[$i + 2];
  }
}
