/** Stop policies by the names the CLI uses (`--policy`). */
import { adaptivePolicy } from './adaptive.ts';
import { clarkPolicy } from './clark.ts';
import { qemuPolicy } from './qemu.ts';
import type { StopPolicy } from './stop-policy.ts';
import { xenLegacyPolicy } from './xen-legacy.ts';
import { xenPolicy } from './xen.ts';

export const POLICY_NAMES = ['xen', 'xen-legacy', 'qemu', 'clark', 'adaptive'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

export interface PolicyOptions {
  /** qemu / adaptive: the downtime target, ms (default 300). */
  readonly downtimeLimitMs?: number;
}

export class UnknownPolicyError extends Error {
  constructor(name: string) {
    super(`unknown stop policy "${name}" (known: ${POLICY_NAMES.join(', ')})`);
    this.name = 'UnknownPolicyError';
  }
}

export function isPolicyName(name: string): name is PolicyName {
  return (POLICY_NAMES as readonly string[]).includes(name);
}

/** A fresh policy object (policies may keep per-migration state). */
export function createPolicy(name: string, opts: PolicyOptions = {}): StopPolicy {
  switch (name) {
    case 'xen':
      return xenPolicy();
    case 'xen-legacy':
      return xenLegacyPolicy();
    case 'qemu':
      return qemuPolicy({ downtimeLimitMs: opts.downtimeLimitMs });
    case 'clark':
      return clarkPolicy();
    case 'adaptive':
      return adaptivePolicy({ downtimeLimitMs: opts.downtimeLimitMs });
    default:
      throw new UnknownPolicyError(name);
  }
}
