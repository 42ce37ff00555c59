/**
 * src/core/common: what every concept uses and none owns: errors that name the setting and the
 * value, units (durations, sizes, bytes for humans), atomic writes, free space, progress
 * meters, the paths of the bundles, the version. It imports nothing of runlane.
 */
/** A setting that cannot be accepted: names the setting, the offending value and what would be accepted. */
export class SettingError extends Error {
  constructor(
    readonly setting: string,
    readonly value: string,
    readonly accepted: string,
    readonly reason?: string,
  ) {
    // Options of the CLI (`--root`) read as options, environment variables as variables, the
    // action's inputs as inputs.
    super(
      `${settingKind(setting)} '${setting}' has an invalid value ${JSON.stringify(value)}` +
        (reason ? `: ${reason}` : '') +
        `. Accepted: ${accepted}.`,
    );
    this.name = 'SettingError';
  }
}

function settingKind(setting: string): string {
  if (setting.startsWith('-')) return 'Option';
  // Upper case: an environment variable (RUNLANE_ROOT) or a CLI argument (KEY).
  if (/^[A-Z][A-Z0-9_]*$/.test(setting)) return setting.includes('_') ? 'Variable' : 'Argument';
  return 'Input';
}

/** The message of anything thrown, for logs and reports. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The errno code of a Node file-system error, if any. */
export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error
    ? String((error as { code: unknown }).code)
    : undefined;
}
