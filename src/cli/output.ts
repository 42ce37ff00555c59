/** Collects small writes into chunks of about 64 KiB, for output of many lines. */
export class BatchedWriter {
  private parts: string[] = [];
  private size = 0;

  constructor(private readonly sink: (text: string) => void) {}

  write(text: string): void {
    this.parts.push(text);
    this.size += text.length;
    if (this.size >= 65_536) this.flush();
  }

  flush(): void {
    if (this.parts.length > 0) this.sink(this.parts.join(''));
    this.parts = [];
    this.size = 0;
  }
}

/**
 * A JSON object on stdout, its `lists` written one element a line as they are serialised:
 * a report on 100,000 lanes is never one string in memory.
 */
export function writeJson(value: Record<string, unknown>, lists: readonly string[]): void {
  const out = new BatchedWriter((text) => process.stdout.write(text));
  const fields = Object.entries(value).filter(([, field]) => field !== undefined);
  out.write('{');
  fields.forEach(([name, field], index) => {
    out.write(`${index === 0 ? '\n' : ',\n'}${JSON.stringify(name)}: `);
    if (lists.includes(name) && Array.isArray(field)) {
      out.write('[');
      field.forEach((item, position) => out.write(`${position === 0 ? '\n' : ',\n'}${JSON.stringify(item)}`));
      out.write(field.length > 0 ? '\n]' : ']');
    } else out.write(JSON.stringify(field));
  });
  out.write('\n}\n');
  out.flush();
}
