// Glob patterns ("*" = any run of characters, "?" = one character) compiled once into the
// cheapest test that decides them: most config globs are exact, prefix or suffix shapes,
// which need no regex on the hot path.
export type StringTest = (s: string) => boolean;

function escapeRe(s: string): string {
  return s.replace(/[.+^${}()|[\]\\]/g, '\\$&');
}

export function compileGlob(pattern: string, caseInsensitive = false): StringTest {
  const p = caseInsensitive ? pattern.toLowerCase() : pattern;
  const norm = caseInsensitive ? (s: string) => s.toLowerCase() : (s: string) => s;
  if (p === '*') return () => true;
  const stars = p.split('*').length - 1;
  if (!p.includes('?')) {
    if (stars === 0) return caseInsensitive ? (s) => s.length === p.length && norm(s) === p : (s) => s === p;
    if (stars === 1 && p.endsWith('*')) {
      const pre = p.slice(0, -1);
      return (s) => norm(s).startsWith(pre);
    }
    if (stars === 1 && p.startsWith('*')) {
      const suf = p.slice(1);
      return (s) => norm(s).endsWith(suf);
    }
  }
  const re = new RegExp(
    `^${p
      .split('*')
      .map((part) => escapeRe(part).replace(/\?/g, '.'))
      .join('.*')}$`,
    's',
  );
  return (s) => re.test(norm(s));
}
