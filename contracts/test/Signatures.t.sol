// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ChannelTestBase} from "./utils/ChannelTestBase.sol";
import {ITempoStreamChannel} from "../src/ITempoStreamChannel.sol";
import {TempoStreamChannel} from "../src/TempoStreamChannel.sol";

/// @notice Voucher signature rules: canonical (low-s) only, the right signer only, and bound to
///         this escrow deployment and chain.
contract SignaturesTest is ChannelTestBase {
    uint128 internal constant AMOUNT = 2_000_000;

    function _expectSettleRejected(bytes32 cid, uint128 amount, bytes memory sig) internal {
        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.InvalidSignature.selector);
        escrow.settle(cid, amount, sig);
    }

    // ------------------------------------------------------------------ malleability

    function test_highS_rejected() public {
        bytes32 cid = _open();
        bytes32 digest = escrow.getVoucherDigest(cid, AMOUNT);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, digest);
        bytes32 highS = bytes32(SECP256K1_N - uint256(s));
        uint8 flippedV = v == 27 ? 28 : 27;

        // The twin really is a valid secp256k1 signature by the payer (so the test is meaningful)...
        assertEq(ecrecover(digest, flippedV, r, highS), payer, "malleated twin recovers to payer");
        assertTrue(uint256(highS) > SECP256K1_N / 2, "twin is high-s");
        // ...and the escrow still refuses it.
        _expectSettleRejected(cid, AMOUNT, abi.encodePacked(r, highS, flippedV));

        // The canonical original is accepted.
        vm.prank(payee);
        escrow.settle(cid, AMOUNT, abi.encodePacked(r, s, v));
        assertEq(_channel(cid).settled, AMOUNT, "settled");
    }

    function test_highS_rejectedInClose() public {
        bytes32 cid = _open();
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, escrow.getVoucherDigest(cid, AMOUNT));
        bytes memory twin = abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.InvalidSignature.selector);
        escrow.close(cid, AMOUNT, twin);
    }

    function test_vZeroOrOne_rejected() public {
        bytes32 cid = _open();
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, escrow.getVoucherDigest(cid, AMOUNT));
        _expectSettleRejected(cid, AMOUNT, abi.encodePacked(r, s, v - 27));
    }

    function test_badLengths_rejected() public {
        bytes32 cid = _open();
        bytes memory sig = _sign(PAYER_KEY, cid, AMOUNT);
        _expectSettleRejected(cid, AMOUNT, "");
        _expectSettleRejected(cid, AMOUNT, abi.encodePacked(sig, uint8(0)));
        bytes memory truncated = new bytes(63);
        for (uint256 i = 0; i < 63; ++i) {
            truncated[i] = sig[i];
        }
        _expectSettleRejected(cid, AMOUNT, truncated);
    }

    function test_eip2098Compact_accepted() public {
        bytes32 cid = _open();
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, escrow.getVoucherDigest(cid, AMOUNT));
        bytes32 vs = bytes32(uint256(s) | (uint256(v - 27) << 255));
        vm.prank(payee);
        escrow.settle(cid, AMOUNT, abi.encodePacked(r, vs));
        assertEq(_channel(cid).settled, AMOUNT, "settled with a 64-byte signature");
    }

    // ------------------------------------------------------------------ signer

    function test_strangerSignature_rejected() public {
        bytes32 cid = _open();
        _expectSettleRejected(cid, AMOUNT, _sign(STRANGER_KEY, cid, AMOUNT));
    }

    function test_payeeSignature_rejected() public {
        bytes32 cid = _open();
        _expectSettleRejected(cid, AMOUNT, _sign(PAYEE_KEY, cid, AMOUNT));
    }

    function test_signatureForOtherAmount_rejected() public {
        bytes32 cid = _open();
        _expectSettleRejected(cid, AMOUNT + 1, _sign(PAYER_KEY, cid, AMOUNT));
    }

    function test_signatureForOtherChannel_rejected() public {
        bytes32 cid = _open();
        _expectSettleRejected(cid, AMOUNT, _sign(PAYER_KEY, keccak256("other channel"), AMOUNT));
    }

    function test_delegate_signsVouchers() public {
        bytes32 cid = _open(DEPOSIT, delegate);
        vm.prank(payee);
        escrow.settle(cid, AMOUNT, _sign(DELEGATE_KEY, cid, AMOUNT));
        assertEq(token.balanceOf(payee), INITIAL_BALANCE + AMOUNT, "payee paid on delegate voucher");

        vm.prank(payee);
        escrow.close(cid, AMOUNT * 2, _sign(DELEGATE_KEY, cid, AMOUNT * 2));
        assertEq(token.balanceOf(payee), INITIAL_BALANCE + AMOUNT * 2, "payee after close");
        assertEq(token.balanceOf(payer), INITIAL_BALANCE - AMOUNT * 2, "payer refunded");
    }

    function test_delegateSet_payerSignatureRejected() public {
        bytes32 cid = _open(DEPOSIT, delegate);
        _expectSettleRejected(cid, AMOUNT, _sign(PAYER_KEY, cid, AMOUNT));

        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.InvalidSignature.selector);
        escrow.close(cid, AMOUNT, _sign(PAYER_KEY, cid, AMOUNT));
    }

    function test_noDelegate_delegateSignatureRejected() public {
        bytes32 cid = _open(DEPOSIT, address(0));
        _expectSettleRejected(cid, AMOUNT, _sign(DELEGATE_KEY, cid, AMOUNT));
    }

    // ------------------------------------------------------------------ domain binding

    function test_wrongChainIdInDomain_rejected() public {
        bytes32 cid = _open();
        bytes32 digest = _voucherDigest(address(escrow), block.chainid + 1, cid, AMOUNT);
        _expectSettleRejected(cid, AMOUNT, _signDigest(PAYER_KEY, digest));
    }

    function test_wrongVerifyingContractInDomain_rejected() public {
        bytes32 cid = _open();
        bytes32 digest = _voucherDigest(address(0xBEEF), block.chainid, cid, AMOUNT);
        _expectSettleRejected(cid, AMOUNT, _signDigest(PAYER_KEY, digest));
    }

    function test_wrongNameOrVersionInDomain_rejected() public {
        bytes32 cid = _open();
        _expectSettleRejected(
            cid,
            AMOUNT,
            _signDigest(
                PAYER_KEY,
                _voucherDigestCustom("TIP20 Channel Reserve", "1", address(escrow), block.chainid, cid, AMOUNT)
            )
        );
        _expectSettleRejected(
            cid,
            AMOUNT,
            _signDigest(
                PAYER_KEY,
                _voucherDigestCustom("Tempo Stream Channel", "2", address(escrow), block.chainid, cid, AMOUNT)
            )
        );
    }

    function test_chainChangeAfterSigning_invalidatesVoucher() public {
        bytes32 cid = _open();
        bytes memory sig = _sign(PAYER_KEY, cid, AMOUNT);
        uint256 originalChain = block.chainid;
        vm.chainId(originalChain + 1000);
        _expectSettleRejected(cid, AMOUNT, sig);
        // Back on the original chain the same voucher is fine (the rejection was the domain).
        vm.chainId(originalChain);
        vm.prank(payee);
        escrow.settle(cid, AMOUNT, sig);
        assertEq(_channel(cid).settled, AMOUNT, "settled on the original chain");
    }

    function test_vouchersNotReplayableAcrossDeployments() public {
        TempoStreamChannel other = new TempoStreamChannel();
        vm.prank(payer);
        token.approve(address(other), type(uint256).max);

        // Identical open parameters on both escrows still yield different channels.
        bytes32 idA = _open();
        vm.prank(payer);
        bytes32 idB = other.open(payee, address(token), DEPOSIT, SALT, address(0));
        assertNotEq(idA, idB, "escrow address is part of the channel id");

        // A voucher redeemed on escrow A cannot be redeemed again on B...
        bytes memory sigA = _signWith(escrow, PAYER_KEY, idA, AMOUNT);
        vm.prank(payee);
        escrow.settle(idA, AMOUNT, sigA);
        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.InvalidSignature.selector);
        other.settle(idB, AMOUNT, sigA);

        // ...nor can a voucher for B's channel id signed under A's domain.
        bytes memory crossDomain = _signWith(escrow, PAYER_KEY, idB, AMOUNT);
        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.InvalidSignature.selector);
        other.settle(idB, AMOUNT, crossDomain);

        // Only B's own domain works on B.
        vm.prank(payee);
        other.settle(idB, AMOUNT, _signWith(other, PAYER_KEY, idB, AMOUNT));
        assertEq(other.getChannel(idB).settled, AMOUNT, "settled on B");
        assertNotEq(escrow.domainSeparator(), other.domainSeparator(), "domains differ");
    }
}
