// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReserveTestBase} from "./utils/ReserveTestBase.sol";
import {ITIP20ChannelReserve} from "../src/ITIP20ChannelReserve.sol";

/// @notice Only a canonical 65-byte secp256k1 signature of this reserve's voucher digest by the
///         expected signer moves money.
/// forge-config: default.isolate = true
contract ReserveSignaturesTest is ReserveTestBase {
    ITIP20ChannelReserve.ChannelDescriptor internal d;
    bytes32 internal cid;

    function setUp() public override {
        super.setUp();
        (d, cid) = _open();
    }

    function _expectInvalid(bytes memory sig, uint96 amount) internal {
        vm.prank(payee);
        vm.expectRevert(ITIP20ChannelReserve.InvalidSignature.selector);
        reserve.settle(d, amount, sig);
        vm.prank(payee);
        vm.expectRevert(ITIP20ChannelReserve.InvalidSignature.selector);
        reserve.close(d, amount, amount, sig);
    }

    function test_wrongDomain_isRejected() public {
        _expectInvalid(_signDigest(PAYER_KEY, _digest("Tempo Stream Channel", "1", RESERVE, block.chainid, cid, 10)), 10);
        _expectInvalid(_signDigest(PAYER_KEY, _digest("TIP20 Channel Reserve", "2", RESERVE, block.chainid, cid, 10)), 10);
        _expectInvalid(_signDigest(PAYER_KEY, _digest("TIP20 Channel Reserve", "1", stranger, block.chainid, cid, 10)), 10);
        _expectInvalid(_signDigest(PAYER_KEY, _digest("TIP20 Channel Reserve", "1", RESERVE, 4217, cid, 10)), 10);
    }

    function test_v1VoucherType_isRejected() public {
        bytes32 domain = reserve.domainSeparator();
        bytes32 structHash =
            keccak256(abi.encode(keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)"), cid, uint128(10)));
        _expectInvalid(_signDigest(PAYER_KEY, keccak256(abi.encodePacked("\x19\x01", domain, structHash))), 10);
    }

    function test_otherAmountOrChannel_isRejected() public {
        _expectInvalid(_sign(PAYER_KEY, cid, 11), 10);
        _expectInvalid(_sign(PAYER_KEY, keccak256("other channel"), 10), 10);
    }

    function test_highS_isRejected_lowTwinAccepted() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, reserve.getVoucherDigest(cid, 10));
        bytes memory high = abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        _expectInvalid(high, 10);
        vm.prank(payee);
        reserve.settle(d, 10, abi.encodePacked(r, s, v));
        assertEq(uint256(_state(cid).settled), 10, "the canonical twin settles");
    }

    function test_rawRecoveryId_isAccepted() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, reserve.getVoucherDigest(cid, 10));
        vm.prank(payee);
        reserve.settle(d, 10, abi.encodePacked(r, s, v - 27));
        assertEq(uint256(_state(cid).settled), 10, "v = 0/1 is accepted, as TIP-1020 does");
    }

    function test_malformed_isRejected() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, reserve.getVoucherDigest(cid, 10));
        _expectInvalid("", 10);
        _expectInvalid(abi.encodePacked(r, bytes32(uint256(v - 27) << 255 | uint256(s))), 10); // EIP-2098
        _expectInvalid(abi.encodePacked(r, s, v, uint8(0)), 10); // 66 bytes
        _expectInvalid(abi.encodePacked(r, s, uint8(29)), 10);
        _expectInvalid(abi.encodePacked(bytes32(0), s, v), 10);
    }

    function test_wrongSigner_isRejected() public {
        _expectInvalid(_sign(STRANGER_KEY, cid, 10), 10);
        _expectInvalid(_sign(PAYEE_KEY, cid, 10), 10);
    }

    function test_delegatedSigner_isExclusive() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory dd, bytes32 dcid) =
            _open(DEPOSIT, keccak256("delegated"), delegate, address(0));
        bytes memory byPayer = _sign(PAYER_KEY, dcid, 10);
        vm.prank(payee);
        vm.expectRevert(ITIP20ChannelReserve.InvalidSignature.selector);
        reserve.settle(dd, 10, byPayer);

        vm.prank(payee);
        reserve.settle(dd, 10, _sign(DELEGATE_KEY, dcid, 10));
        assertEq(uint256(_state(dcid).settled), 10, "delegate's voucher settles");
    }
}
