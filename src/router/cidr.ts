import net from 'node:net';

/** An address as 4 × 32-bit words (IPv4 is mapped to ::ffff:a.b.c.d). */
type Words = [number, number, number, number];

function ipv6Words(ip: string): Words | undefined {
  let text = ip;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    const v4 = ipv4Word(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    tail = [v4 >>> 16, v4 & 0xffff];
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const fill = 8 - head.length - rest.length;
  const groups = [...head, ...Array(Math.max(0, fill)).fill('0'), ...rest].map((g) => Number.parseInt(g, 16));
  if (tail.length) groups.splice(6, 2, ...tail);
  const w: Words = [0, 0, 0, 0];
  for (let i = 0; i < 4; i++) w[i] = ((groups[2 * i] << 16) | groups[2 * i + 1]) >>> 0;
  return w;
}

function ipv4Word(ip: string): number | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) v = v * 256 + Number(p);
  return v >>> 0;
}

function toWords(ip: string): Words | undefined {
  const kind = net.isIP(ip);
  if (kind === 4) return [0, 0, 0xffff, ipv4Word(ip)!];
  if (kind === 6) return ipv6Words(ip);
  return undefined;
}

export interface CidrSet {
  has(ip: string): boolean;
}

/** Compiles CIDRs once; lookups memoise the last address, since a connection's calls share it. */
export function compileCidrs(cidrs: readonly string[]): CidrSet {
  const nets = cidrs.map((c) => {
    const [ip, bitsText] = c.split('/');
    const v4 = net.isIP(ip) === 4;
    const words = toWords(ip)!;
    const bits = bitsText === undefined ? 128 : Number(bitsText) + (v4 ? 96 : 0);
    const mask: Words = [0, 0, 0, 0];
    for (let i = 0; i < 4; i++) {
      const b = Math.max(0, Math.min(32, bits - 32 * i));
      mask[i] = b === 0 ? 0 : (0xffffffff << (32 - b)) >>> 0;
      words[i] = (words[i] & mask[i]) >>> 0;
    }
    return { words, mask };
  });
  let lastIp = '';
  let lastResult = false;
  return {
    has(ip: string): boolean {
      if (ip === lastIp) return lastResult;
      const w = toWords(ip);
      let found = false;
      if (w) {
        for (const n of nets) {
          if (
            (w[0] & n.mask[0]) >>> 0 === n.words[0] &&
            (w[1] & n.mask[1]) >>> 0 === n.words[1] &&
            (w[2] & n.mask[2]) >>> 0 === n.words[2] &&
            (w[3] & n.mask[3]) >>> 0 === n.words[3]
          ) {
            found = true;
            break;
          }
        }
      }
      lastIp = ip;
      lastResult = found;
      return found;
    },
  };
}
