// Sign a channel open the way the reference SDK (mppx 0.11.0, legacy session client)
// does: one Tempo transaction batching approve + open, fee token = the currency,
// expiring nonce valid 25 s, gas from viem's prepareTransactionRequest + 5000, and
// (with "sponsored") the 0x78 fee-payer hand-over. Against a live RPC.
//
// stdin:  {rpcUrl, chainId, privateKey, escrow, payee, currency, deposit, salt, sponsored}
// stdout: {transaction, from, gas}
import { encodeFunctionData } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { prepareTransactionRequest, signTransaction } from 'viem/actions'
import { Abis } from 'viem/tempo'
import { devchainClient, readStdin } from './devchain.mjs'
// The deployed v1 escrow's ABI as the SDK ships it (not in the package's exports map).
const { escrowAbi } = await import(
  new URL('../../../node_modules/mppx/dist/tempo/legacy/session/escrow.abi.js', import.meta.url).href
)

const input = await readStdin()
const account = privateKeyToAccount(input.privateKey)
const client = devchainClient(input, account)
const deposit = BigInt(input.deposit)
const approveData = encodeFunctionData({
  abi: Abis.tip20, functionName: 'approve', args: [input.escrow, deposit],
})
const openData = encodeFunctionData({
  abi: escrowAbi,
  functionName: 'open',
  args: [input.payee, input.currency, deposit, input.salt, '0x0000000000000000000000000000000000000000'],
})
const prepared = await prepareTransactionRequest(client, {
  account,
  calls: [
    { to: input.currency, data: approveData },
    { to: input.escrow, data: openData },
  ],
  feeToken: input.currency,
  nonceKey: 'expiring',
  validBefore: Math.floor(Date.now() / 1000) + 25,
})
prepared.gas = (prepared.gas ?? 0n) + 5000n
if (input.sponsored) prepared.feePayer = true
const transaction = await signTransaction(client, prepared)
process.stdout.write(JSON.stringify({
  transaction, from: account.address.toLowerCase(), gas: prepared.gas.toString(),
}))
