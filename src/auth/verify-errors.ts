/**
 * The 401 reason for a token the verifier refused. Reasons are fixed strings: the verifier's
 * own messages may quote token contents, and nothing from the token goes back to the client.
 */
export function rejectionReason(code: unknown): string {
  switch (code) {
    case 'FAST_JWT_EXPIRED':
      return 'token expired';
    case 'FAST_JWT_INACTIVE':
      return 'token not yet valid';
    case 'FAST_JWT_INVALID_ALGORITHM':
    case 'FAST_JWT_MISSING_SIGNATURE':
      return 'token algorithm not allowed';
    case 'FAST_JWT_INVALID_SIGNATURE':
      return 'token signature invalid';
    case 'FAST_JWT_INVALID_CLAIM_VALUE':
    case 'FAST_JWT_INVALID_CLAIM_TYPE':
    case 'FAST_JWT_MISSING_REQUIRED_CLAIM':
      return 'token claims invalid';
    case 'FAST_JWT_KEY_FETCHING_ERROR':
      return 'token signed with an unknown key';
    default:
      return 'token malformed';
  }
}
