// Sign a channel open the way the reference SDK (mppx 0.11.0, legacy session client)
// does: one Tempo transaction batching approve + open, fee token = the currency,
// expiring nonce valid 25 s, gas from viem's prepareTransactionRequest + 5000, and
// (with "sponsored") the 0x78 fee-payer hand-over. Against a live RPC.
//
// stdin:  {rpcUrl, chainId, privateKey, escrow, payee, currency, deposit, salt, sponsored}
// stdout: {transaction, from, gas}
import { signTransaction } from 'viem/actions'
import { prepareOpen, readInput, tempoClient } from './tempo_client.mjs'

const input = await readInput()
const { account, client } = tempoClient(input)
const prepared = await prepareOpen(client, account, {
  escrow: input.escrow,
  payee: input.payee,
  currency: input.currency,
  deposit: BigInt(input.deposit),
  salt: input.salt,
  signer: '0x0000000000000000000000000000000000000000',
})
prepared.gas = (prepared.gas ?? 0n) + 5000n
if (input.sponsored) prepared.feePayer = true
const transaction = await signTransaction(client, prepared)
process.stdout.write(JSON.stringify({
  transaction, from: account.address.toLowerCase(), gas: prepared.gas.toString(),
}))
