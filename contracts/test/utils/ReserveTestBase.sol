// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {ITIP20ChannelReserve} from "../../src/ITIP20ChannelReserve.sol";
import {TIP20ChannelReserve} from "../../src/TIP20ChannelReserve.sol";
import {TestToken} from "../../src/TestToken.sol";
import {voucherDigest} from "./VoucherDigest.sol";

/// @notice The cheatcodes the reserve tests need beyond `Vm` in Test.sol (same address).
interface VmReserve {
    function etch(address target, bytes calldata code) external;
    function store(address target, bytes32 slot, bytes32 value) external;
    function load(address target, bytes32 slot) external view returns (bytes32);
    function prank(address sender, address origin) external;
}

/// @notice Shared fixture for the TIP-1034 reserve: the runtime code installed at the canonical
///         address with `etch` (no constructor ran, as with the devchain's `anvil_setCode`), one
///         token, keyed actors with funds and the allowance the devchain grants (divergence (a)).
/// @dev Test contracts deriving from this run with `isolate = true`: every top-level call is its
///      own transaction, so transient storage (the consumed expiring-nonce hash, the
///      "opened in this transaction" marks) ends between calls as on a real chain.
abstract contract ReserveTestBase is Test {
    VmReserve internal constant vmr = VmReserve(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    address internal constant RESERVE = 0x4d50500000000000000000000000000000000000;
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint256 internal constant INITIAL_BALANCE = 1_000_000_000;
    uint96 internal constant DEPOSIT = 10_000_000;
    bytes32 internal constant SALT = keccak256("salt-1");
    /// @dev Base slot of `pendingExpiringNonceHash`, as documented in the contract.
    uint256 internal constant PENDING_SLOT = 1;

    uint256 internal constant PAYER_KEY = 0xA11CE;
    uint256 internal constant PAYEE_KEY = 0xB0B;
    uint256 internal constant OPERATOR_KEY = 0x0123;
    uint256 internal constant STRANGER_KEY = 0xC4A5E;
    uint256 internal constant DELEGATE_KEY = 0xDE1E6A7E;

    TIP20ChannelReserve internal reserve;
    TestToken internal token;
    address internal payer;
    address internal payee;
    address internal operator;
    address internal stranger;
    address internal delegate;
    uint256 private _txCounter;

    function setUp() public virtual {
        vmr.etch(RESERVE, address(new TIP20ChannelReserve()).code);
        reserve = TIP20ChannelReserve(RESERVE);
        token = new TestToken();
        payer = vm.addr(PAYER_KEY);
        payee = vm.addr(PAYEE_KEY);
        operator = vm.addr(OPERATOR_KEY);
        stranger = vm.addr(STRANGER_KEY);
        delegate = vm.addr(DELEGATE_KEY);
        _fund(payer);
        _fund(stranger);
    }

    function _fund(address who) internal {
        token.mint(who, INITIAL_BALANCE);
        vm.prank(who);
        token.approve(RESERVE, type(uint256).max);
    }

    /// @dev What the devchain's JSON-RPC front does before forwarding an opening transaction.
    function _seed(address sender, bytes32 hash) internal {
        vmr.store(RESERVE, keccak256(abi.encode(sender, PENDING_SLOT)), hash);
    }

    function _nextTxHash() internal returns (bytes32) {
        return keccak256(abi.encode("opening transaction", ++_txCounter));
    }

    function _descriptor(bytes32 salt, address signer, address op, bytes32 nonceHash)
        internal
        view
        returns (ITIP20ChannelReserve.ChannelDescriptor memory)
    {
        return ITIP20ChannelReserve.ChannelDescriptor({
            payer: payer,
            payee: payee,
            operator: op,
            token: address(token),
            salt: salt,
            authorizedSigner: signer,
            expiringNonceHash: nonceHash
        });
    }

    /// @dev Opens payer -> payee in its own transaction with a fresh expiring-nonce hash.
    function _open(uint96 deposit, bytes32 salt, address signer, address op)
        internal
        returns (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 channelId)
    {
        d = _descriptor(salt, signer, op, _nextTxHash());
        _seed(payer, d.expiringNonceHash);
        vmr.prank(payer, payer);
        channelId = reserve.open(payee, op, address(token), deposit, salt, signer);
    }

    function _open() internal returns (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 channelId) {
        return _open(DEPOSIT, SALT, address(0), address(0));
    }

    function _state(bytes32 channelId) internal view returns (ITIP20ChannelReserve.ChannelState memory) {
        return reserve.getChannelState(channelId);
    }

    /// @dev The raw storage word of a channel's packed state (slot 0 mapping).
    function _rawState(bytes32 channelId) internal view returns (uint256) {
        return uint256(vmr.load(RESERVE, keccak256(abi.encode(channelId, uint256(0)))));
    }

    function _sign(uint256 key, bytes32 channelId, uint96 amount) internal pure returns (bytes memory) {
        return _signDigest(key, _digest("TIP20 Channel Reserve", "1", RESERVE, 31337, channelId, amount));
    }

    function _signDigest(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev The voucher digest from first principles (independent of the contract).
    function _digest(
        string memory name,
        string memory version,
        address verifyingContract,
        uint256 chainId,
        bytes32 channelId,
        uint96 amount
    ) internal pure returns (bytes32) {
        return voucherDigest(
            "Voucher(bytes32 channelId,uint96 cumulativeAmount)",
            name,
            version,
            verifyingContract,
            chainId,
            channelId,
            amount
        );
    }

    function _settle(ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 channelId, uint96 amount) internal {
        bytes memory sig = _sign(PAYER_KEY, channelId, amount);
        vm.prank(payee);
        reserve.settle(d, amount, sig);
    }

    function _requestClose(ITIP20ChannelReserve.ChannelDescriptor memory d) internal {
        vm.prank(payer);
        reserve.requestClose(d);
    }
}
