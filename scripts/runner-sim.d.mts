export declare const ACTION_DIR: string;
export declare function stagedActionDir(): string;
export declare function parseFileCommands(text: string): Record<string, string>;

export interface StepResult {
  code: number | string | null;
  stdout: string;
  stderr: string;
  exported: Record<string, string>;
  outputs: Record<string, string>;
  state: Record<string, string>;
  summary: string;
  warnings: string[];
  errors: string[];
}

export interface SimulatedJobOptions {
  inputs?: Record<string, string>;
  env?: Record<string, string | undefined>;
  platform?: 'github' | 'gitea' | 'forgejo';
  matrix?: unknown;
  ref?: string;
  event?: { name: string; payload: unknown };
  dir?: string;
  user?: 'nobody';
}

export declare class SimulatedJob {
  constructor(options?: SimulatedJobOptions);
  dir: string;
  workspace: string;
  inputs: Record<string, string>;
  status: string;
  env: Record<string, string | undefined>;
  state: Record<string, string>;
  exported: Record<string, string>;
  outputs: Record<string, string>;
  summary: string;
  phase(name: 'pre' | 'main' | 'post', options?: { worker?: boolean; timeoutMs?: number }): Promise<StepResult>;
  run(
    command: string,
    args?: string[],
    options?: {
      timeoutMs?: number;
      env?: Record<string, string>;
      onSpawn?: (child: import('node:child_process').ChildProcess) => void;
    },
  ): Promise<StepResult>;
  inputEnv(): Record<string, string>;
  killWorker(): void;
  stepEnv(): Record<string, string | undefined>;
  dispose(): void;
}
export function awaitBackgroundDeletes(dir: string, timeoutMs?: number): void;
