// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ChannelTestBase} from "./utils/ChannelTestBase.sol";
import {ITempoStreamChannel} from "../src/ITempoStreamChannel.sol";

/// @notice Property tests over random amounts: every token that enters a channel leaves it to
///         the payee or the payer, never more and never less.
contract FuzzTest is ChannelTestBase {
    function _u128(uint256 x, uint256 min, uint256 max) internal pure returns (uint128) {
        return uint128(bound(x, min, max));
    }

    /// @dev Fresh balances so amounts up to type(uint128).max fit.
    function _fundedOpen(uint128 deposit, address signer) internal returns (bytes32) {
        token.mint(payer, deposit);
        return _open(deposit, signer);
    }

    function _total() internal view returns (uint256) {
        return token.balanceOf(payer) + token.balanceOf(payee) + token.balanceOf(address(escrow));
    }

    function testFuzz_settleThenClose_conservesFunds(uint256 depositSeed, uint256 settleSeed, uint256 closeSeed)
        public
    {
        uint128 deposit = _u128(depositSeed, 1, type(uint128).max);
        uint128 settleAmount = _u128(settleSeed, 0, deposit);
        uint128 closeAmount = _u128(closeSeed, settleAmount, deposit);

        uint256 payer0 = token.balanceOf(payer) + deposit; // after the mint below
        uint256 payee0 = token.balanceOf(payee);
        bytes32 cid = _fundedOpen(deposit, address(0));
        uint256 total = _total();
        assertEq(total, payer0 + payee0, "open conserves");

        if (settleAmount > 0) {
            _settle(cid, settleAmount);
            assertEq(token.balanceOf(payee), payee0 + settleAmount, "payee after settle");
            assertEq(_total(), total, "settle conserves");
        }

        bytes memory sig = _sign(PAYER_KEY, cid, closeAmount);
        vm.prank(payee);
        escrow.close(cid, closeAmount, sig);

        assertEq(token.balanceOf(payee), payee0 + closeAmount, "payee gets exactly the final cumulative");
        assertEq(token.balanceOf(payer), payer0 - closeAmount, "payer gets exactly the rest");
        assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        assertEq(token.balanceOf(payer) + token.balanceOf(payee), payer0 + payee0, "conservation");
        assertTrue(_channel(cid).finalized, "finalized");
        assertEq(_channel(cid).settled, 0, "record cleared, as on the deployed escrow");
    }

    function testFuzz_topUpSettleWithdraw_conservesFunds(
        uint256 depositSeed,
        uint256 topUpSeed,
        uint256 settleSeed,
        uint256 waitSeed
    ) public {
        uint128 deposit = _u128(depositSeed, 1, type(uint128).max / 2);
        uint128 topUp = _u128(topUpSeed, 1, type(uint128).max / 2);
        uint128 total = deposit + topUp;
        uint128 settleAmount = _u128(settleSeed, 0, total);
        uint256 wait = bound(waitSeed, 15 minutes, 3650 days);

        token.mint(payer, total);
        uint256 payer0 = token.balanceOf(payer);
        uint256 payee0 = token.balanceOf(payee);
        bytes32 cid = _open(deposit, delegate);
        vm.prank(payer);
        escrow.topUp(cid, topUp);
        assertEq(_channel(cid).deposit, total, "deposit after top-up");

        if (settleAmount > 0) {
            vm.prank(payee);
            escrow.settle(cid, settleAmount, _sign(DELEGATE_KEY, cid, settleAmount));
        }

        _requestClose(cid);
        vm.warp(block.timestamp + wait);
        vm.prank(payer);
        escrow.withdraw(cid);

        assertEq(token.balanceOf(payee), payee0 + settleAmount, "payee keeps exactly what was settled");
        assertEq(token.balanceOf(payer), payer0 - settleAmount, "payer gets the unsettled rest");
        assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
    }

    function testFuzz_settleMonotonic(uint256 depositSeed, uint256 firstSeed, uint256 secondSeed) public {
        uint128 deposit = _u128(depositSeed, 2, type(uint128).max);
        uint128 first = _u128(firstSeed, 1, deposit);
        uint128 second = _u128(secondSeed, 0, type(uint128).max);
        bytes32 cid = _fundedOpen(deposit, address(0));
        uint256 payee0 = token.balanceOf(payee);

        _settle(cid, first);
        bytes memory sig = _sign(PAYER_KEY, cid, second);
        vm.prank(payee);
        if (second <= first) {
            vm.expectRevert(ITempoStreamChannel.AmountNotIncreasing.selector);
            escrow.settle(cid, second, sig);
            assertEq(token.balanceOf(payee), payee0 + first, "nothing more paid");
        } else if (second > deposit) {
            vm.expectRevert(ITempoStreamChannel.AmountExceedsDeposit.selector);
            escrow.settle(cid, second, sig);
            assertEq(token.balanceOf(payee), payee0 + first, "nothing more paid");
        } else {
            escrow.settle(cid, second, sig);
            assertEq(token.balanceOf(payee), payee0 + second, "paid up to the new cumulative");
            assertEq(_channel(cid).settled, second, "settled");
        }
    }

    function testFuzz_computeChannelIdMatchesOpen(address payeeArg, bytes32 salt, address signer) public {
        vm.assume(payeeArg != address(0));
        bytes32 expected = escrow.computeChannelId(payer, payeeArg, address(token), salt, signer);
        vm.prank(payer);
        bytes32 cid = escrow.open(payeeArg, address(token), 1, salt, signer);
        assertEq(cid, expected, "open returns computeChannelId");
        assertEq(_channel(cid).payee, payeeArg, "payee stored");
        assertEq(_channel(cid).authorizedSigner, signer, "signer stored");
    }
}
