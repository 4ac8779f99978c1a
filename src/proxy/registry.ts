// Which proxy handles which sniffed class. Adding a protocol = one line here.
import type { GatewayContext, ProtocolProxy } from '../core/proxy.js';
import type { SniffClass } from '../core/types.js';
import { createH2FrameProxy } from './h2frame/index.js';
import { createHttp1Proxy } from './http1/index.js';
import { createTcpProxy } from './tcp/index.js';
import { createThriftProxy } from './thrift/index.js';

type Factory = (ctx: GatewayContext) => ProtocolProxy;

/** Protocol proxies by sniff class; classes without one are proxied as TCP. */
export const PROXIES: Partial<Record<SniffClass, Factory>> = {
  tcp: createTcpProxy,
  http1: createHttp1Proxy,
  h2: createH2FrameProxy,
  thrift: createThriftProxy,
};
