export enum Inputs {
  Root = 'root',
  Presets = 'presets',
  Env = 'env',
  Link = 'link',
  Matrix = 'matrix',
  Key = 'key',
  Cleanup = 'cleanup',
  Mode = 'mode',
  JobStatus = 'job-status',
  LeaseTimeout = 'lease-timeout',
  MaxAge = 'max-age',
  KeepFree = 'keep-free',
  DryRun = 'dry-run',
  PreSweep = 'pre-sweep',
  PrivilegedCleanup = 'privileged-cleanup',
  Warm = 'warm',
  WarmFrom = 'warm-from',
  WarmKeep = 'warm-keep',
  WarmIf = 'warm-if',
  WarmKey = 'warm-key',
  WarmMaxSize = 'warm-max-size',
  Remote = 'remote',
  RemoteSave = 'remote-save',
  RemoteMaxSize = 'remote-max-size',
  RemoteMaxEntries = 'remote-max-entries',
  RemotePaths = 'remote-paths',
  RemoteTimeout = 'remote-timeout',
}

export enum Outputs {
  Path = 'path',
  Key = 'key',
  DockerArgs = 'docker-args',
  Warm = 'warm',
  WarmSource = 'warm-source',
}

export enum State {
  Root = 'root',
  Key = 'key',
  LanePath = 'lane-path',
  HolderPid = 'holder-pid',
  Links = 'links',
  Trust = 'trust',
  WarmKey = 'warm-key',
  Upload = 'upload',
}

export const CLEANUPS = ['always', 'on-success', 'never', 'defer'] as const;
export type Cleanup = (typeof CLEANUPS)[number];
export const MODES = ['lane', 'sweep'] as const;
export type Mode = (typeof MODES)[number];
