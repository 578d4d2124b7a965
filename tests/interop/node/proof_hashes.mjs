// EIP-712 hashes of zero-amount charge proofs, for tests/interop/test_proof_vectors.py.
// stdin:  {cases: [{chainId, challengeId, realm, account}]}
// stdout: {sdk: [hash], draft: [hash]} -- `sdk` from the reference SDK's own
// Proof.hash (mppx/tempo), `draft` from viem's hashTypedData over the typed data
// draft-tempo-charge-00 specifies (domain MPP version 1, Proof(string challengeId)).
import { Proof } from 'mppx/tempo'
import { hashTypedData } from 'viem'
import { readStdin } from './devchain.mjs'

const input = await readStdin()
const sdk = input.cases.map((c) =>
  Proof.hash({ account: c.account, chainId: c.chainId, challengeId: c.challengeId, realm: c.realm }),
)
const draft = input.cases.map((c) =>
  hashTypedData({
    domain: { name: 'MPP', version: '1', chainId: c.chainId },
    types: { Proof: [{ name: 'challengeId', type: 'string' }] },
    primaryType: 'Proof',
    message: { challengeId: c.challengeId },
  }),
)
process.stdout.write(JSON.stringify({ sdk, draft }))
