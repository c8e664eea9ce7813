/** `host:port` as users type it back: an IPv6 address in brackets (`[::1]:7000`), as --to and --listen take it. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
