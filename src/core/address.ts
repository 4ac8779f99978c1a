import net from 'node:net';
import type { HostPort } from './types.js';

/**
 * Parses "host:port", "[v6]:port" or ":port" (all interfaces). Returns an error string
 * for anything else, so config validation can report it with a position.
 */
export function parseHostPort(text: string): HostPort | string {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0 || text[end + 1] !== ':') return `invalid address "${text}": expected [v6]:port`;
    host = text.slice(1, end);
    if (!net.isIPv6(host)) return `invalid address "${text}": "${host}" is not an IPv6 address`;
    portText = text.slice(end + 2);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return `invalid address "${text}": expected host:port`;
    host = text.slice(0, colon);
    if (host.includes(':')) return `invalid address "${text}": write IPv6 addresses as [addr]:port`;
    portText = text.slice(colon + 1);
  }
  if (!/^\d{1,5}$/.test(portText)) return `invalid address "${text}": bad port "${portText}"`;
  const port = Number(portText);
  if (port > 65535) return `invalid address "${text}": port out of range`;
  if (host !== '' && !net.isIP(host) && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host)) {
    return `invalid address "${text}": bad host "${host}"`;
  }
  return { host, port };
}

export function formatHostPort(hp: HostPort): string {
  if (hp.host === '') return `:${hp.port}`;
  return net.isIPv6(hp.host) ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/**
 * True for 127.0.0.0/8, ::1, localhost and IPv4-mapped loopback ('' = all interfaces is
 * not): admin binds there may run without auth.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** Unwraps "::ffff:1.2.3.4" as node reports IPv4 clients on dual-stack sockets. */
export function unmapIPv4(ip: string | undefined): string {
  if (!ip) return '';
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}
