/** A setting that cannot be accepted: names the setting, the offending value and what would be accepted. */
export class SettingError extends Error {
  constructor(
    readonly setting: string,
    readonly value: string,
    readonly accepted: string,
    readonly reason?: string,
  ) {
    // Options of the CLI (`--root`) read as options; the action's inputs as inputs.
    super(
      `${setting.startsWith('-') ? 'Option' : 'Input'} '${setting}' has an invalid value ${JSON.stringify(value)}` +
        (reason ? `: ${reason}` : '') +
        `. Accepted: ${accepted}.`,
    );
    this.name = 'SettingError';
  }
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
