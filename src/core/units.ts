import { SettingError } from './errors.js';

const DURATION_UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `90s`, `30m`, `6h`, `7d`, `2w`, or a combination like `1h30m`; a bare number is seconds. */
export function parseDuration(setting: string, value: string): number {
  const text = value.trim();
  const accepted = 'a duration like 30s, 90m, 6h, 7d, 2w or 1h30m (a bare number is seconds)';
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
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

export function parseSpace(setting: string, value: string): SpaceTarget {
  const text = value.trim();
  const accepted = 'a percentage like 10% or a size like 20G, 512M, 1.5T (0 turns it off)';
  const percent = /^(\d+(?:\.\d+)?)%$/.exec(text);
  if (percent) {
    const number = Number(percent[1]);
    if (number >= 100) throw new SettingError(setting, value, accepted, 'a percentage must be below 100');
    return { percent: number };
  }
  const size = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text);
  if (!size) throw new SettingError(setting, value, accepted);
  return { bytes: Math.round(Number(size[1]) * SIZE_UNITS[size[2].toLowerCase()]) };
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
