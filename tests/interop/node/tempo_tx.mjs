// Reference encodings of Tempo (0x76) transactions, computed by the TypeScript SDK
// (ox/tempo and viem/tempo from node_modules) for the Python tests to compare with.
//
// stdin:  {"cases": [{name, senderKey, feePayerKey?, sponsored, tx: {...}}], "decode": ["0x76..."]}
//         integers are decimal strings; tx fields use the SDK's camelCase names.
// stdout: {"cases": [{name, sender, signingPayload, signHash, viemSigned, oxSigned,
//                     feePayerHash?, oxFinal?, viemFinal?, finalHash}],
//          "decoded": [{...fields of TxEnvelopeTempo.deserialize, bigints as strings}]}
import { TxEnvelopeTempo, SignatureEnvelope } from 'ox/tempo'
import { Secp256k1, Hash } from 'ox'
import { privateKeyToAccount } from 'viem/accounts'
import { Transaction } from 'viem/tempo'

const input = JSON.parse(await new Promise((resolve) => {
  let text = ''
  process.stdin.on('data', (chunk) => { text += chunk })
  process.stdin.on('end', () => resolve(text))
}))

const big = (v) => (v === undefined || v === null ? undefined : BigInt(v))
const num = (v) => (v === undefined || v === null ? undefined : Number(v))

function envelope(tx) {
  return {
    chainId: Number(tx.chainId),
    calls: tx.calls.map((c) => ({ to: c.to, data: c.data, value: big(c.value) })),
    gas: big(tx.gas),
    maxFeePerGas: big(tx.maxFeePerGas),
    maxPriorityFeePerGas: big(tx.maxPriorityFeePerGas),
    nonceKey: big(tx.nonceKey),
    nonce: big(tx.nonce),
    validBefore: num(tx.validBefore),
    validAfter: num(tx.validAfter),
    feeToken: tx.feeToken ?? undefined,
    accessList: tx.accessList ?? undefined,
  }
}

function strip(obj) {
  return JSON.parse(JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)))
}

const cases = []
for (const c of input.cases ?? []) {
  const sender = privateKeyToAccount(c.senderKey)
  const base = envelope(c.tx)
  const unsigned = TxEnvelopeTempo.from({
    ...base,
    ...(c.sponsored ? { feePayerSignature: null } : {}),
  })
  const signingPayload = TxEnvelopeTempo.encodeForSigning(unsigned)
  const signHash = TxEnvelopeTempo.getSignPayload(unsigned)
  const sig = Secp256k1.sign({ payload: signHash, privateKey: c.senderKey })
  const signature = SignatureEnvelope.from(sig)
  const oxSigned = TxEnvelopeTempo.serialize(unsigned, { signature })
  // What the SDK's wallet produces (mppx signs with viem's signTransaction).
  const viemSigned = await sender.signTransaction(
    { ...base, ...(c.sponsored ? { feePayer: true } : {}) },
    { serializer: Transaction.serialize },
  )
  const out = { name: c.name, sender: sender.address.toLowerCase(), signingPayload, signHash,
    oxSigned, viemSigned }
  let final = oxSigned
  if (c.feePayerKey) {
    const withToken = TxEnvelopeTempo.from({ ...base, signature })
    const feePayerHash = TxEnvelopeTempo.getFeePayerSignPayload(withToken, { sender: sender.address })
    const fpSig = Secp256k1.sign({ payload: feePayerHash, privateKey: c.feePayerKey })
    final = TxEnvelopeTempo.serialize(withToken, { feePayerSignature: fpSig })
    const feePayer = privateKeyToAccount(c.feePayerKey)
    out.feePayerHash = feePayerHash
    out.oxFinal = final
    out.viemFinal = await sender.signTransaction(
      { ...base, feePayer },
      { serializer: Transaction.serialize },
    )
  }
  out.finalHash = Hash.keccak256(final)
  cases.push(out)
}

const decoded = (input.decode ?? []).map((raw) => {
  try {
    const tx = TxEnvelopeTempo.deserialize(raw)
    return strip({ ok: true, ...tx, from: tx.from?.toLowerCase() })
  } catch (error) {
    return { ok: false, error: String(error?.shortMessage ?? error?.message ?? error) }
  }
})

process.stdout.write(JSON.stringify({ cases, decoded }))
