/**
 * When a new version's hooks refuse clearly more of the players' events than the version before
 * did: the live check during a patch's verification window (room/version-switch.ts) and the
 * same check before it goes live (`moonpatch validate`, cli/validate.ts). A game may refuse
 * events on purpose (an input its rules reject), so the test is the share refused against the
 * version before's share, with a margin (game.json `verifyRefusalMarginPercent`).
 */

/** Events a new version must have run before its share of refusals can fail it. */
export const MIN_VERIFY_EVENTS = 20;
/** Events the version before must have run for its share of refusals to count (else: none refused). */
export const MIN_BASELINE_EVENTS = 50;

/** Whether a version's hooks refuse more than `marginPercent` points more of the events than before. */
export function refusalsTooHigh(v: { events: number; refused: number; refusedBefore: number }, marginPercent: number): boolean {
  if (v.events < MIN_VERIFY_EVENTS || marginPercent >= 100) return false;
  return v.refused / v.events > v.refusedBefore + marginPercent / 100;
}

/** The share of the version before's events refused, or 0 when it ran too few to say. */
export function baselineShare(before: { events: number; refused: number }): number {
  return before.events >= MIN_BASELINE_EVENTS ? before.refused / before.events : 0;
}
