/**
 * Grants name channels by exact name or by a trailing-`*` prefix pattern (`team-*`, or `*`
 * for everything). Nothing else is special: a `*` anywhere but the end never matches, so a
 * typo in a claim grants less, never more.
 */

const PATTERN = /^[A-Za-z0-9_.-]{0,64}\*?$/;

export function isValidPattern(pattern: string): boolean {
  return pattern !== '' && PATTERN.test(pattern);
}

export function matchesPattern(pattern: string, name: string): boolean {
  if (!isValidPattern(pattern)) return false;
  if (pattern.endsWith('*')) return name.startsWith(pattern.slice(0, -1));
  return pattern === name;
}

export function matchesAny(patterns: readonly string[], name: string): boolean {
  return patterns.some((pattern) => matchesPattern(pattern, name));
}
