// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

import {ArenaEscrow} from "./ArenaEscrow.sol";

/// @title Arena: the RLFC Arena escrow with entry fees in ETH.
/// @notice Balances, fees and payouts are in wei. The escrow rules are `ArenaEscrow`'s.
contract Arena is ArenaEscrow {
    constructor(address initialOperator, address initialTreasury, uint64 reclaimAfterSeconds)
        ArenaEscrow(initialOperator, initialTreasury, reclaimAfterSeconds)
    {}

    /// @notice ETH: the zero address.
    function feeToken() public pure override returns (address) {
        return address(0);
    }

    /// @notice Adds the sent ETH to the sender's balance.
    function deposit() external payable {
        _credit(msg.sender, msg.value);
    }

    function _payOut(address to, uint256 amount) internal override {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
