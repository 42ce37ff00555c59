// Generates a path-only cargo workspace (no registry): `crates` library crates in a chain,
// each with enough generic code to make a cold build take real time, and an `app` binary
// depending on all of them. Used by the bench and the end-to-end suite.
import fs from 'node:fs';
import path from 'node:path';

export function generateWorkspace(dir, { crates = 20, functions = 40 } = {}) {
  fs.mkdirSync(path.join(dir, 'crates'), { recursive: true });
  const names = Array.from({ length: crates }, (_, i) => `lane_crate_${String(i).padStart(2, '0')}`);
  fs.writeFileSync(
    path.join(dir, 'Cargo.toml'),
    `[workspace]\nresolver = "2"\nmembers = [${[...names, 'app'].map((n) => `"crates/${n}"`).join(', ')}]\n\n[profile.dev]\ndebug = 0\n`,
  );
  names.forEach((name, i) => {
    const crate = path.join(dir, 'crates', name);
    fs.mkdirSync(path.join(crate, 'src'), { recursive: true });
    const dep = i > 0 ? `${names[i - 1]} = { path = "../${names[i - 1]}" }\n` : '';
    fs.writeFileSync(
      path.join(crate, 'Cargo.toml'),
      `[package]\nname = "${name}"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n${dep}`,
    );
    const body = [];
    if (i > 0) body.push(`pub use ${names[i - 1]} as previous;`);
    body.push('pub trait Shape { fn area(&self) -> f64; fn name(&self) -> String; }');
    for (let f = 0; f < functions; f++) {
      body.push(
        `#[derive(Debug, Clone, PartialEq)] pub struct S${f}<T> { pub items: Vec<T>, pub scale: f64 }`,
        `impl<T: Clone + std::fmt::Debug> S${f}<T> { pub fn grow(&self, n: usize) -> Vec<T> { self.items.iter().cycle().take(n).cloned().collect() } pub fn describe(&self) -> String { format!("{:?} x {}", self.items, self.scale) } }`,
        `impl<T: Clone + std::fmt::Debug> Shape for S${f}<T> { fn area(&self) -> f64 { self.items.len() as f64 * self.scale * ${f + 1}.0 } fn name(&self) -> String { format!("s${f}-{}", self.describe()) } }`,
        `pub fn f${f}(x: u64) -> u64 { let s = S${f} { items: vec![x, x + 1, x + 2], scale: 1.5 }; s.grow(${(f % 7) + 3}).iter().map(|v| v.wrapping_mul(${f + 3})).fold(0u64, |a, b| a.wrapping_add(b)) + s.area() as u64 + s.name().len() as u64 }`,
      );
    }
    body.push(
      `pub fn total(x: u64) -> u64 { ${Array.from({ length: functions }, (_, f) => `f${f}(x)`).join(' ^ ')}${i > 0 ? ' ^ previous::total(x)' : ''} }`,
    );
    fs.writeFileSync(path.join(crate, 'src', 'lib.rs'), `${body.join('\n')}\n`);
  });
  const app = path.join(dir, 'crates', 'app');
  fs.mkdirSync(path.join(app, 'src'), { recursive: true });
  fs.writeFileSync(
    path.join(app, 'Cargo.toml'),
    `[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n${names.map((n) => `${n} = { path = "../${n}" }`).join('\n')}\n`,
  );
  fs.writeFileSync(path.join(app, 'src', 'main.rs'), mainSource(names, 0));
  const last = path.join(dir, 'crates', names[names.length - 1], 'src', 'lib.rs');
  return {
    names,
    /** Edits one source file: the last library crate (it and the app rebuild, nothing else). */
    touch: (n) => fs.appendFileSync(last, `pub fn edited_${n}() -> u64 { ${n} }\n`),
  };
}

function mainSource(names, variant) {
  return `fn main() {\n    let v = ${names.map((n) => `${n}::total(${variant})`).join(' ^ ')};\n    println!("{}", v);\n}\n`;
}
