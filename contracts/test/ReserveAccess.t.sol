// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReserveTestBase} from "./utils/ReserveTestBase.sol";
import {ITIP20ChannelReserve} from "../src/ITIP20ChannelReserve.sol";

/// @notice Who may call what: the payer alone tops up, requests a close and withdraws; the payee,
///         or a nonzero operator, settles and closes; payouts always go to the payee.
/// forge-config: default.isolate = true
contract ReserveAccessTest is ReserveTestBase {
    function test_payerOnlyFunctions_refuseEveryoneElse() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d,) = _open(DEPOSIT, SALT, address(0), operator);
        address[3] memory others = [payee, operator, stranger];
        for (uint256 i = 0; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(ITIP20ChannelReserve.NotPayer.selector);
            reserve.topUp(d, 1);
            vm.prank(others[i]);
            vm.expectRevert(ITIP20ChannelReserve.NotPayer.selector);
            reserve.requestClose(d);
        }
        _requestClose(d);
        vm.warp(block.timestamp + 900);
        for (uint256 i = 0; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(ITIP20ChannelReserve.NotPayer.selector);
            reserve.withdraw(d);
        }
    }

    function test_payeeSideFunctions_refuseThePayerAndStrangers() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open(DEPOSIT, SALT, address(0), operator);
        bytes memory sig = _sign(PAYER_KEY, cid, 10);
        address[2] memory others = [payer, stranger];
        for (uint256 i = 0; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(ITIP20ChannelReserve.NotPayeeOrOperator.selector);
            reserve.settle(d, 10, sig);
            vm.prank(others[i]);
            vm.expectRevert(ITIP20ChannelReserve.NotPayeeOrOperator.selector);
            reserve.close(d, 10, 10, sig);
        }
    }

    function test_operator_settlesAndClosesForThePayee() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open(DEPOSIT, SALT, address(0), operator);
        bytes memory s1 = _sign(PAYER_KEY, cid, 400);
        vm.prank(operator);
        reserve.settle(d, 400, s1);
        assertEq(token.balanceOf(payee), 400, "settlement goes to the payee");
        assertEq(token.balanceOf(operator), 0, "never to the operator");

        bytes memory s2 = _sign(PAYER_KEY, cid, 900);
        vm.prank(operator);
        reserve.close(d, 900, 900, s2);
        assertEq(token.balanceOf(payee), 900, "close capture goes to the payee");
        assertEq(token.balanceOf(payer), INITIAL_BALANCE - 900, "refund to the payer");
        assertEq(token.balanceOf(operator), 0, "operator holds nothing");
    }

    function test_payee_stillActsWhenAnOperatorIsSet() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open(DEPOSIT, SALT, address(0), operator);
        _settle(d, cid, 5);
        assertEq(token.balanceOf(payee), 5, "payee settled itself");
    }

    function test_zeroOperator_authorisesNobody() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        bytes memory sig = _sign(PAYER_KEY, cid, 10);
        vm.prank(address(0));
        vm.expectRevert(ITIP20ChannelReserve.NotPayeeOrOperator.selector);
        reserve.settle(d, 10, sig);
        vm.prank(operator);
        vm.expectRevert(ITIP20ChannelReserve.NotPayeeOrOperator.selector);
        reserve.settle(d, 10, sig);
    }

    function test_operatorOfOneChannel_cannotTouchAnother() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        d.operator = operator; // the operator claims a role the channel was not opened with
        bytes memory sig = _sign(PAYER_KEY, cid, 10);
        vm.prank(operator);
        vm.expectRevert(ITIP20ChannelReserve.ChannelNotFound.selector);
        reserve.settle(d, 10, sig);
    }

    function test_unknownChannel_everyMutatorReverts() public {
        ITIP20ChannelReserve.ChannelDescriptor memory d = _descriptor(SALT, address(0), address(0), keccak256("never"));
        vm.startPrank(payer);
        vm.expectRevert(ITIP20ChannelReserve.ChannelNotFound.selector);
        reserve.topUp(d, 1);
        vm.expectRevert(ITIP20ChannelReserve.ChannelNotFound.selector);
        reserve.requestClose(d);
        vm.expectRevert(ITIP20ChannelReserve.ChannelNotFound.selector);
        reserve.withdraw(d);
        vm.stopPrank();
        vm.startPrank(payee);
        vm.expectRevert(ITIP20ChannelReserve.ChannelNotFound.selector);
        reserve.settle(d, 1, "");
        vm.expectRevert(ITIP20ChannelReserve.ChannelNotFound.selector);
        reserve.close(d, 1, 1, "");
        vm.stopPrank();
    }
}
