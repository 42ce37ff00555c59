import { SettingError } from './errors.js';

const DURATION_UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `90s`, `30m`, `6h`, `7d`, `2w`, or a combination like `1h30m`: always with a unit, always above zero. */
export function parseDuration(setting: string, value: string): number {
  const text = value.trim();
  const accepted = 'a duration with a unit, like 30s, 90m, 6h, 7d, 2w or 1h30m';
  if (/^\d+(\.\d+)?$/.test(text)) {
    throw new SettingError(setting, value, accepted, `a bare number has no unit: write ${text}s, ${text}m or ${text}h`);
  }
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)([smhdw])/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join('') !== text) {
    throw new SettingError(setting, value, accepted);
  }
  const ms = parts.reduce((sum, part) => sum + Number(part[1]) * DURATION_UNITS[part[2]], 0);
  if (ms <= 0) throw new SettingError(setting, value, accepted, 'it must be longer than zero');
  return ms;
}

/** Free space to keep: a percentage of the file system (`10%`) or an amount (`20G`, `512M`, bytes). */
export type SpaceTarget = { percent: number } | { bytes: number };

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** `10%`, `20G`, `512M`, `1.5T` (binary units: G is GiB), or `off`; a bare number is refused. */
export function parseSpace(setting: string, value: string): SpaceTarget {
  const text = value.trim();
  const accepted = 'a percentage like 10%, a size like 20G, 512M or 1.5T (G = GiB), or off';
  if (text === 'off') return { bytes: 0 };
  const percent = /^(\d+(?:\.\d+)?)%$/.exec(text);
  if (percent) {
    const number = Number(percent[1]);
    if (number >= 100) throw new SettingError(setting, value, accepted, 'a percentage must be below 100');
    return { percent: number };
  }
  if (/^\d+(\.\d+)?$/.test(text)) {
    throw new SettingError(setting, value, accepted, `a bare number has no unit: write ${text}%, ${text}G or ${text}M`);
  }
  const size = /^(\d+(?:\.\d+)?)\s*([kmgt])(?:i?b)?$/i.exec(text) ?? /^(\d+(?:\.\d+)?)\s*(b)$/i.exec(text);
  if (!size) throw new SettingError(setting, value, accepted);
  const unit = size[2].toLowerCase();
  return { bytes: Math.round(Number(size[1]) * (unit === 'b' ? 1 : SIZE_UNITS[unit])) };
}

/** A duration in words for humans: 45s, 12m, 3h 5m, 2d 4h. */
export function humanDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 ? `${hours}h ${minutes % 60}m` : `${hours}h`;
  const days = Math.floor(hours / 24);
  return hours % 24 ? `${days}d ${hours % 24}h` : `${days}d`;
}

/** Human-readable bytes: 0 B, 512 B, 1.5 KiB, 20.0 GiB. */
export function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Age of an ISO timestamp, for humans ("3h 5m"); "?" when unknown. */
export function ageOf(created: string | undefined, now = Date.now()): string {
  const time = created ? Date.parse(created) : NaN;
  return Number.isNaN(time) ? '?' : humanDuration(now - time);
}
